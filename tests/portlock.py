"""Ports claimed across processes, so that testpool's own tests, the benchmarks and the stress
run on one machine (two checkouts, a suite beside a benchmark) never hand out the same ports.

Byte N of one lock file stands for port N: a POSIX record lock on a range claims those ports
for the process holding it, until it exits (the file must stay open: closing it drops the
locks). The file is at a fixed path, whatever TMPDIR says, so every process finds the same one.
"""

from __future__ import annotations

import fcntl
import os
import socket

LOCK_FILE = f"/tmp/selftest-ports-{os.getuid()}.lock"
_locks = open(LOCK_FILE, "a+b")  # noqa: SIM115 (kept open for the process's life)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def claim(base: int, count: int) -> bool:
    """Whether ports ``base`` .. ``base + count - 1`` are free and no other process claimed
    them; if so, this process holds them from now on."""
    try:
        fcntl.lockf(_locks, fcntl.LOCK_EX | fcntl.LOCK_NB, count, base)
    except OSError:
        return False
    return all(_bindable(port) for port in range(base, base + count))
