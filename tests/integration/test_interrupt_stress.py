"""A short round of the interrupt stress (tests/stress/interrupts.py): one run of each kind
of interrupt (SIGINT, SIGTERM, SIGKILL, SIGKILL reaped 5 s late) at a random moment of a real
4-worker run, and nothing left behind after any of them. `just stress` runs 100."""

from __future__ import annotations

import subprocess
import sys

from support import REPO


def test_one_interrupt_of_each_kind_leaves_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "stress" / "interrupts.py"), "--runs", "4"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4/4 runs left nothing behind" in done.stdout
