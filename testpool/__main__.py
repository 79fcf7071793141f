"""``python -m testpool`` is the same as the ``testpool`` command."""

from testpool.cli import main

if __name__ == "__main__":
    main()
