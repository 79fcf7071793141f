"""The test suite's own port blocks: two pytest sessions at once never share one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# Allocates two blocks, prints them, then holds them until its stdin closes (as a session
# holds its blocks until it ends).
HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from support import allocate_ports
print(allocate_ports(), allocate_ports(), flush=True)
sys.stdin.read()
"""


def test_concurrent_sessions_get_different_port_blocks() -> None:
    # Regression: each session counted its blocks from the same start, so two sessions (two
    # checkouts' suites, or a suite beside a benchmark) gave their projects the same ports.
    env = {"PATH": "/usr/bin:/bin", "PYTEST_XDIST_WORKER": "gw5"}
    argv = [sys.executable, "-c", HOLDER, str(TESTS)]
    holders = [
        subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        blocks = []
        for holder in holders:
            assert holder.stdout is not None
            blocks += [int(port) for port in holder.stdout.readline().split()]
    finally:
        for holder in holders:
            holder.communicate("", timeout=30)
    assert len(blocks) == 4 and len(set(blocks)) == 4, blocks
    assert all(abs(a - b) >= 8 for a in blocks for b in blocks if a != b), blocks
