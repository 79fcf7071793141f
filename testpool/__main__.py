"""The ``testpool`` command and ``python -m testpool``.

This module imports nothing heavy before it takes SIGTERM and Ctrl-C over: a signal (SIGINT, SIGTERM, SIGHUP) that
arrives while Python imports click, rich and testpool's modules stops testpool with its one
line and exit status 130, as it does later, not with a traceback or silently.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED = 130  # testpool.errors.ExitCode.INTERRUPTED, not imported: it is not light


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The console script: the CLI, once it is imported."""
    taken = (signal.SIGTERM, signal.SIGHUP)
    for sig in taken:
        signal.signal(sig, _interrupt)  # as the CLI does (SIGTERM and SIGHUP are Ctrl-C)
    try:
        try:
            from testpool.cli import main as cli_main
        except KeyboardInterrupt:
            sys.stderr.write("testpool: interrupted\n")
            raise SystemExit(INTERRUPTED) from None
        cli_main()
    finally:
        for sig in taken:  # what follows the command (Python's exit) is not interruptible
            signal.signal(sig, signal.SIG_DFL)


if __name__ == "__main__":
    main()
