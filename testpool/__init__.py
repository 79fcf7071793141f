"""testpool: run an end-to-end suite in parallel against isolated dev-server workers."""

__version__ = "0.1.0"
