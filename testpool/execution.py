"""Running one process on a deadline, in its own process group, capturing its output.

Shared by every executor. A process started here leads a new session (so one signal stops it
and everything it spawned, and a Ctrl-C in the terminal reaches testpool, not the test); it is
registered with a :class:`ProcessTracker` for as long as it lives, so the interrupt path can stop
whatever is running; when it times out or is cancelled its whole group gets SIGTERM, a short
deadline, then SIGKILL. Whatever it left running in its group when it exited is stopped too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testpool import procs

if TYPE_CHECKING:
    from testpool.state import RunJournal

# Keep at most this much of a test's output in memory (the head is dropped, the tail kept).
OUTPUT_LIMIT = 8 * 1024 * 1024
TRUNCATED_NOTE = b"[testpool: earlier output truncated]\n"


class ProcessTracker:
    """The process groups of this run that are alive right now.

    Used by the interrupt path; each change is also written to the run's journal, so that
    ``testpool clean`` (or the reaper) knows them if this process dies.
    """

    def __init__(self, journal: RunJournal | None = None) -> None:
        self._groups: set[int] = set()
        self._journal = journal

    def add(self, pgid: int, what: str = "test process") -> None:
        self._groups.add(pgid)
        if self._journal is not None:
            self._journal.add_processes([(pgid, what)])

    def discard(self, pgid: int) -> None:
        if pgid in self._groups:
            self._groups.discard(pgid)
            if self._journal is not None:
                self._journal.remove_process(pgid)

    @property
    def groups(self) -> frozenset[int]:
        return frozenset(self._groups)

    def kill_all_now(self) -> None:
        """Second Ctrl-C: no grace period."""
        for pgid in self._groups:
            procs.kill_group_now(pgid)


@dataclass(frozen=True)
class ProcessResult:
    returncode: int | None  # None when we killed it on the deadline
    output: bytes
    duration: float
    timed_out: bool


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    tracker: ProcessTracker,
    pass_fds: Sequence[int] = (),
    stdin: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` as the leader of a new process group, stdout+stderr on one pipe."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError:
        raise ExecutableNotFound(f"command not found: {argv[0]}") from None
    except ValueError:  # a NUL character, which no command line can carry
        raise CannotStart("the command line would contain a NUL character") from None
    tracker.add(process.pid)
    return process


class CannotStart(Exception):
    """The process cannot be started; ``str()`` says why, in one line."""


class ExecutableNotFound(CannotStart):
    """The command to run does not exist."""


async def read_limited(stream: asyncio.StreamReader, limit: int = OUTPUT_LIMIT) -> bytes:
    """Read ``stream`` to EOF, keeping at most ``limit`` bytes (the tail)."""
    buffer = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        buffer += chunk
        if len(buffer) > limit:
            del buffer[: len(buffer) - limit]
            truncated = True
    return (TRUNCATED_NOTE + bytes(buffer)) if truncated else bytes(buffer)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    tracker: ProcessTracker,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` to completion or to ``timeout``; stop its whole group either way."""
    started = time.monotonic()
    process = await spawn(argv, cwd=cwd, env=env, tracker=tracker, pass_fds=pass_fds)
    assert process.stdout is not None
    reader = asyncio.ensure_future(read_limited(process.stdout))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            timed_out = True
        duration = time.monotonic() - started
        # On a timeout, or if it left children behind holding the pipe, stop the group.
        await procs.terminate_group(process.pid)
        await process.wait()
        output = await _finish_reading(reader)
    except asyncio.CancelledError:
        await asyncio.shield(_stop(process, reader))
        raise
    finally:
        tracker.discard(process.pid)
    return ProcessResult(None if timed_out else process.returncode, output, duration, timed_out)


async def _finish_reading(reader: asyncio.Future[bytes]) -> bytes:
    try:
        return await asyncio.wait_for(asyncio.shield(reader), 5.0)
    except TimeoutError:
        # Something outside the group still holds the pipe; take what we have.
        reader.cancel()
        return b"[testpool: output still open after the test ended; not waiting for it]\n"


async def _stop(process: asyncio.subprocess.Process, reader: asyncio.Future[bytes]) -> None:
    await procs.terminate_group(process.pid)
    try:
        await asyncio.wait_for(process.wait(), 1.0)
    except TimeoutError:
        pass
    reader.cancel()


def decode(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")


def close_fd(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
