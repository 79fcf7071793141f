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
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testpool import procs

if TYPE_CHECKING:
    from testpool.state import RunJournal, RunScope

# Keep at most this much of a test's output in memory (the head is dropped, the tail kept).
OUTPUT_LIMIT = 8 * 1024 * 1024
TRUNCATED_NOTE = b"[testpool: earlier output truncated]\n"
# After a test has exited and its group is gone, how long its output pipe may take to close.
OUTPUT_GRACE = 1.0
HELD_OPEN_NOTE = (
    b"\n[testpool: a process outside the test's process group still holds its output open; "
    b"not waiting for it]\n"
)


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
    with _starting(argv):
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
    tracker.add(process.pid)
    return process


@contextmanager
def _starting(argv: Sequence[str]) -> Iterator[None]:
    """Turn the ways starting ``argv`` fails into :class:`CannotStart` with one line."""
    try:
        yield
    except FileNotFoundError:
        raise ExecutableNotFound(f"command not found: {argv[0]}") from None
    except ValueError:  # a NUL character, which no command line can carry
        raise CannotStart("the command line would contain a NUL character") from None


class CannotStart(Exception):
    """The process cannot be started; ``str()`` says why, in one line."""


class ExecutableNotFound(CannotStart):
    """The command to run does not exist."""


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    tracker: ProcessTracker,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` to completion or to ``timeout``; stop its whole group either way.

    The process's own exit is the verdict: it is watched through a pidfd, not through its
    output pipe, which a background process it left behind (``sleep 3600 &``, a daemon that
    called setsid) may hold open for ever. Whatever is left in its group is stopped at once;
    output still held open by a process outside the group is not waited for.
    """
    started = time.monotonic()
    process = _popen(argv, cwd=cwd, env=env, pass_fds=pass_fds)
    tracker.add(process.pid)
    output = _Output(process)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(procs.watch_exit(process.pid), timeout)
        except TimeoutError:
            timed_out = True
        duration = time.monotonic() - started
        if not timed_out:
            process.wait()  # it has exited: reaping takes no time
        await procs.terminate_group(process.pid)
        if timed_out:
            await procs.watch_exit(process.pid)
            process.wait()
        data = await output.finish(OUTPUT_GRACE)
    except asyncio.CancelledError:
        await asyncio.shield(_stop(process, output))
        raise
    finally:
        output.close()
        tracker.discard(process.pid)
    return ProcessResult(None if timed_out else process.returncode, data, duration, timed_out)


def _popen(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], pass_fds: Sequence[int] = ()
) -> subprocess.Popen[bytes]:
    with _starting(argv):
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )


class _Output:
    """A process's output pipe, read on the event loop into a bounded buffer (the tail)."""

    def __init__(self, process: subprocess.Popen[bytes], limit: int = OUTPUT_LIMIT) -> None:
        assert process.stdout is not None
        self._pipe = process.stdout
        self._fd = self._pipe.fileno()
        os.set_blocking(self._fd, False)
        self._limit = limit
        self._buffer = bytearray()
        self._truncated = False
        self._loop = asyncio.get_running_loop()
        self._eof = self._loop.create_future()
        self._reading = True
        self._loop.add_reader(self._fd, self._read)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._stop_reading()
                if not self._eof.done():
                    self._eof.set_result(None)
                return
            self._buffer += chunk
            if len(self._buffer) > self._limit:
                del self._buffer[: len(self._buffer) - self._limit]
                self._truncated = True

    async def finish(self, grace: float) -> bytes:
        """Everything read once the pipe closes, or after ``grace`` seconds if something
        outside the process's group still holds it open."""
        try:
            await asyncio.wait_for(asyncio.shield(self._eof), grace)
            note = b""
        except TimeoutError:
            self._read()  # what is already in the pipe
            note = HELD_OPEN_NOTE
        data = bytes(self._buffer)
        if self._truncated:
            data = TRUNCATED_NOTE + data
        return data + note

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def close(self) -> None:
        self._stop_reading()
        self._pipe.close()


async def _stop(process: subprocess.Popen[bytes], output: _Output) -> None:
    await procs.terminate_group(process.pid)
    try:
        await asyncio.wait_for(procs.watch_exit(process.pid), 1.0)
        process.wait()
    except TimeoutError:
        pass
    output.close()


def run_collector(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    scope: RunScope,
) -> tuple[int, bytes, bytes]:
    """Run a discovery command (a collecting pytest, a ``discover`` command) to completion.

    Synchronous (discovery happens before the event loop). The process leads its own process
    group, carries the run's id and is recorded in the run's journal, so a SIGKILL of testpool
    leaves it to the reaper; a timeout, Ctrl-C or SIGTERM stops its whole group here. Returns
    the exit status, stdout and stderr (bytes: what they are is the caller's to judge).
    Raises :class:`subprocess.TimeoutExpired` past ``timeout``.
    """
    journal = scope.journal()
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**env, procs.RUN_ID_VARIABLE: scope.run_id},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    journal.add_processes([(process.pid, "discovery")])
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:  # a timeout, Ctrl-C, or SIGTERM turned into KeyboardInterrupt
        procs.terminate_groups([process.pid])
        process.wait()
        raise
    finally:
        procs.terminate_groups([process.pid])  # whatever it left running in its group
        journal.remove_process(process.pid)
    return process.returncode, stdout, stderr


def decode(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")


def close_fd(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
