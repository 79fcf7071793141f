"""The worker log reader: a server's output from its FIFO to the log file, redacted."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from testpool.pool import WorkerLog
from testpool.secrets import Redactor

CHUNK = 64 * 1024


def _feed(fifo: Path, chunks: list[bytes]) -> threading.Thread:
    def write() -> None:
        fd = os.open(fifo, os.O_WRONLY)
        try:
            for chunk in chunks:
                os.write(fd, chunk)
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


async def _read_all(log: WorkerLog, expected_lines: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while log.path.read_bytes().count(b"\n") < expected_lines:
        assert time.monotonic() < deadline, "the log reader did not keep up"
        await asyncio.sleep(0.01)


def test_a_long_line_without_newline_costs_linear_time(tmp_path: Path) -> None:
    size = 32 * 1024 * 1024  # read in 64 KiB pieces: 512 reads into one line

    async def scenario() -> tuple[float, str]:
        log = WorkerLog(tmp_path / "worker-0.log", tmp_path / "w.fifo", Redactor(["SECRETVALUE"]))
        body = b"x" * (size - 20) + b"SECRETVALUE"
        chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] + [b"\nnext\n"]
        cpu = time.process_time()
        writer = _feed(log.fifo, chunks)
        await _read_all(log, 2, timeout=120)
        used = time.process_time() - cpu
        writer.join(10)
        tail = log.tail()
        log.close()
        return used, tail

    used, tail = asyncio.run(scenario())
    text = (tmp_path / "worker-0.log").read_text()
    assert text == "x" * (size - 20) + "[secret]\nnext\n"
    # Linear: well under a second of CPU for 32 MiB; the quadratic reader took many seconds.
    assert used < 3.0, f"{used:.1f} s of CPU to read 32 MiB"
    # An error message shows the tail: a line in it is cut short.
    assert tail.endswith("\nnext")
    assert max(len(line) for line in tail.splitlines()) <= 2000


def test_lines_split_across_reads_are_joined(tmp_path: Path) -> None:
    async def scenario() -> str:
        log = WorkerLog(tmp_path / "worker-0.log", tmp_path / "w.fifo", Redactor(["hunter22"]))
        writer = _feed(log.fifo, [b"one\ntw", b"o hun", b"ter22\r\n\nthr", b"ee\nfour"])
        await _read_all(log, 4, timeout=30)
        writer.join(10)
        log.close()
        return log.path.read_text()

    assert asyncio.run(scenario()) == "one\ntwo [secret]\n\nthree\nfour\n"
