"""The reaper: a tiny watchdog that cleans up a run whose testpool process was killed.

Every run starts one (``python -m testpool.reaper RECORD``) in its own session, holding the
read end of a pipe whose only writer is the run. When the run ends — normally, by an
exception, or by SIGKILL — the kernel closes the write end and the reaper wakes. If the run
left its record behind (it only does that when it could not clean up itself), the reaper
cleans it exactly as ``testpool clean`` would. So even ``kill -9`` leaves nothing running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# While the run lives the reaper is only `cat` waiting on the pipe: no Python interpreter
# competes for the CPU while the workers start. Python starts when there is work to do.
_WAIT_THEN_REAP = 'cat >/dev/null; exec "$0" -m testpool.reaper "$1"'


def spawn(record_path: Path) -> int:
    """Start the reaper for ``record_path``; returns the pipe's write end, which the run keeps."""
    read_end, write_end = os.pipe()  # non-inheritable: no child of ours holds the write end
    try:
        subprocess.Popen(
            ["/bin/sh", "-c", _WAIT_THEN_REAP, sys.executable, str(record_path)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal must not reach it
            close_fds=True,
        )
    finally:
        os.close(read_end)
    return write_end


def main(argv: list[str]) -> int:
    record_path = Path(argv[0])
    # The run has ended (the pipe reached end-of-file); drain in case we were started directly.
    while sys.stdin.buffer.read(4096):
        pass
    if not record_path.exists():
        return 0  # the run cleaned up after itself
    from testpool.state import RunRecord, clean_run, wait_until_dead

    try:
        record = RunRecord.from_dict(json.loads(record_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return 1
    # The pipe closes as the run exits, a moment before the kernel marks it dead; a zombie
    # (a parent that reaps late) is dead.
    if not wait_until_dead(record):
        return 0  # the run is still going (it closed the pipe early): not ours to touch
    if record_path.exists():
        clean_run(record, record_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
