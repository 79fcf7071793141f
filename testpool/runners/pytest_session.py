"""pytest's fast mode: collect once per run, fork one long-lived pytest per worker.

The :class:`Zygote` is a pytest process that collects the suite once and then, on request,
forks a worker process that already has every test collected (see
:mod:`testpool.pytest_plugin`). When the run knows its tests (the plan, before any worker
starts), the zygote collects only the files it is told to (those of the tests to run, or of
the first tests only: see :func:`testpool.startup.files_to_prepare_first`), and a worker
collects any other file the first time it is sent one of its tests
(``TESTPOOL_EARLY_START=0``: the whole suite, first). Each :class:`PytestSession` owns one
such fork for one testpool worker and talks to it over a Unix socket: a node id out, a JSON
verdict back. A fork
that crashes or hangs is stopped (its own process group) and replaced by a new fork before the
worker's next test, in milliseconds, without collecting again.

Called by the pytest executor; every process started here is tracked for the interrupt path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool import procs
from testpool.execution import close_fd, decode, spawn
from testpool.results import Outcome, Status

if TYPE_CHECKING:
    from testpool.runners.base import ExecContext, TestCase, WorkerContext
    from testpool.runners.pytest_runner import PytestRunner

FORK_TIMEOUT = 30.0  # a fork that does not connect back within this is given up
EARLY_START_VARIABLE = "TESTPOOL_EARLY_START"  # "0": the zygote collects the whole suite first
COLLECTING = "pytest start and collection"  # the start-up phase (report.json's startup)
OUTPUT_TAIL = 64 * 1024
RESULT_LINE_LIMIT = 64 * 1024 * 1024  # a verdict carries the test's captured output
OUTCOMES = {"passed": Status.PASSED, "failed": Status.FAILED, "skipped": Status.SKIPPED}
NOT_COLLECTED_CAUSES = """\
testpool's pytest collects the suite twice: once to list the tests, and once in the process the
workers are forked from. This test was in the first collection and not in the second. Likely:
- test ids that change from one collection to the next: parametrize ids made from a set, from
  random or time values, or from objects' default reprs;
- parametrize ids made from TEST_BASE_URL, PORT, DATA_DIR, API_TOKEN or TESTPOOL_WORKER read at
  import: such a module is collected again in each worker, with its values (give them ids=);
- collection that depends on how pytest is run: the workers' pytest is started with
  --testpool-serve and TESTPOOL_CMD_FD (discovery with --collect-only), so a conftest or a
  plugin may select other tests there;
- a plugin that takes over collection or the run loop (testpool turns pytest-xdist's
  distribution off in its own pytest; it knows no others). pytest_mode = "process" runs
  every test in a pytest of its own, collecting just that test.
"""


class ZygoteError(Exception):
    """The zygote could not collect the suite or fork a worker."""


@dataclass(frozen=True)
class Recollected:
    """The zygote's answer to a re-collection (``--watch``): every test it has now, as
    discovery describes them (see ``pytest_plugin.describe``), the files that did not collect
    (node id, pytest's error), new files it could not place (a new zygote must collect), and
    the test files it has still not collected (left out when it started: their tests are
    those known before)."""

    items: list[list[Any]]
    errors: list[tuple[str, str]]
    unplaced: list[str]
    forgotten: list[str]  # the files asked to be forgotten that were loaded modules
    deferred: list[str]  # root-relative, as test ids begin

    @classmethod
    def from_dict(cls, answer: dict[str, Any]) -> Recollected:
        return cls(
            list(answer["items"]),
            [(str(node), str(text)) for node, text in answer["errors"]],
            [str(path) for path in answer["unplaced"]],
            [str(path) for path in answer["forgotten"]],
            [str(path) for path in answer.get("deferred", [])],
        )


class Connection:
    """One forked worker process and its socket."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int, output: Path
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.output = output


class Zygote:
    """The run's collecting pytest, which forks workers on request. One per run."""

    def __init__(self, runner: PytestRunner, context: ExecContext) -> None:
        self.runner = runner
        self.context = context
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._exited: dict[int, int] = {}
        self._exit_events: dict[int, asyncio.Event] = {}
        self._stdout: deque[bytes] = deque(maxlen=64)
        self._tasks: list[asyncio.Task[None]] = []
        self._recollected: asyncio.Future[Recollected] | None = None
        self.error: str | None = None
        self.collected = 0  # how many tests the zygote collected
        self.partial = False  # it left files for the workers to collect
        self._whole_suite = False  # --watch started it again: it collects every file

    def argv(self) -> list[str]:
        config = self.runner.config
        return [
            *self.runner.base_args(), "-q", "--testpool-serve",
            str(config.tests_path), *config.pytest_args,
        ]  # fmt: skip

    def first_files(self) -> list[str]:
        """The files to collect before the first fork (none: the whole suite)."""
        if self._whole_suite or os.environ.get(EARLY_START_VARIABLE, "1").strip() == "0":
            return []
        return list(self.context.first_files)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def ensure(self) -> None:
        """Start (or restart) the zygote and wait until it has collected."""
        async with self._lock:
            if self.error or (self.alive and self._ready.is_set()):
                return  # a failed collection is not retried for every test
            if not self.alive:
                await self.spawn()
            await self._wait_ready()

    async def spawn(self) -> None:
        """Start the zygote; returns as soon as it runs (collection goes on meanwhile)."""
        await self._stop()
        self._ready.clear()
        # Message boundaries (SEQPACKET) carry one request and its socket (SCM_RIGHTS) each.
        control, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        result_read, result_write = os.pipe()
        env = {
            **self.context.collection_env,
            "TESTPOOL_CMD_FD": str(zygote_end.fileno()),
            "TESTPOOL_RESULT_FD": str(result_write),
        }
        first = self.first_files()
        if first:
            listing = self.context.scratch / "first-files.json"
            listing.write_text(json.dumps(first))
            env["TESTPOOL_FIRST_FILES"] = str(listing)
        timeline = self.context.timeline
        if timeline is not None:
            timeline.begin(COLLECTING)
            timeline.facts["collection"] = (
                f"{len(first)} file(s) first, the others in the workers when they need them"
                if first
                else "the whole suite before any test"
            )
        try:
            process = await spawn(
                self.argv(), cwd=self.runner.root, env=env, tracker=self.context.tracker,
                pass_fds=(zygote_end.fileno(), result_write),
            )  # fmt: skip
        finally:
            zygote_end.close()
            close_fd(result_write)
        self._process = process
        self._control = control
        loop = asyncio.get_running_loop()
        messages = asyncio.StreamReader(limit=RESULT_LINE_LIMIT)  # a re-collection lists every test
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(messages), os.fdopen(result_read, "rb")
        )
        self._tasks = [
            asyncio.ensure_future(self._read_messages(messages)),
            asyncio.ensure_future(self._drain_stdout(process)),
        ]

    async def _wait_ready(self) -> None:
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait(
                {ready, self._tasks[0]},
                timeout=self.runner.config.test_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if not self._ready.is_set():
            await self._stop()
            tail = decode(b"".join(self._stdout))[-4000:]
            self.error = "pytest could not collect the tests for the workers\n" + tail

    async def _read_messages(self, messages: asyncio.StreamReader) -> None:
        while line := await messages.readline():
            message = json.loads(line)
            if "ready" in message:
                self.collected = int(message["ready"])
                self.partial = bool(message.get("partial"))
                if self.context.timeline is not None:
                    self.context.timeline.end(COLLECTING)
                self._ready.set()
            elif "exited" in message:
                pid = int(message["exited"])
                self._exited[pid] = int(message["status"])
                self.context.tracker.discard(pid)
                self._exit_events.setdefault(pid, asyncio.Event()).set()
            elif (
                "recollected" in message
                and self._recollected is not None
                and not self._recollected.done()
            ):
                self._recollected.set_result(Recollected.from_dict(message["recollected"]))

    async def _drain_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            self._stdout.append(chunk)

    async def fork(self, worker: WorkerContext) -> Connection:
        """A new worker process with ``worker``'s environment, connected and ready."""
        await self.ensure()
        if self.error or self._control is None:
            raise ZygoteError(self.error or "the pytest zygote is not running")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        output = self.context.scratch / f"pytest-worker-{worker.index}-{uuid.uuid4().hex[:8]}.out"
        request = json.dumps({"env": dict(worker.env), "output": str(output)}).encode()
        try:
            socket.send_fds(self._control, [request], [theirs.fileno()])
        except OSError:
            mine.close()
            raise ZygoteError("the pytest zygote is gone") from None
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=mine, limit=RESULT_LINE_LIMIT)
        try:
            hello = json.loads(await asyncio.wait_for(reader.readline(), FORK_TIMEOUT))
            pid = int(hello["pid"])
        except (TimeoutError, ValueError, KeyError):
            writer.close()
            raise ZygoteError("the pytest zygote did not fork a worker") from None
        self.context.tracker.add(pid, f"pytest of worker {worker.index}")
        return Connection(reader, writer, pid, output)

    async def recollect(
        self,
        purge: list[Path],
        modules: list[Path],
        bytecode: Path | None = None,
        *,
        first: bool = True,
    ) -> Recollected:
        """``--watch``: forget the Python modules of ``purge`` and collect the test files
        ``modules`` again (see ``pytest_plugin._Zygote``); the workers forked from now on run
        the new code (``bytecode``: a folder where the compiled modules are shared, see
        ``pytest_plugin._shared_bytecode``; not ``first``: a worker compiled them there already).
        Raises :class:`ZygoteError` if the zygote is not
        there to answer."""
        async with self._lock:
            if self.error or self._control is None or not self.alive:
                raise ZygoteError(self.error or "the pytest zygote is not running")
            future: asyncio.Future[Recollected] = asyncio.get_running_loop().create_future()
            self._recollected = future
            request = {"recollect": _request(purge, modules, bytecode, describe=True)}
            request["recollect"]["compile"] = first
            # The zygote ending (its message reader stops) also ends the wait.
            gone: asyncio.Future[Any] = self._tasks[0]
            try:
                self._control.send(json.dumps(request).encode())
                await asyncio.wait(
                    {future, gone},
                    timeout=self.runner.config.test_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except OSError:
                raise ZygoteError("the pytest zygote is gone") from None
            finally:
                self._recollected = None
            if not future.done():
                future.cancel()
                raise ZygoteError("the pytest zygote did not answer a re-collection")
            return future.result()

    async def restart(self) -> None:
        """``--watch``: a new zygote collects the whole suite again (conftest files, plugins
        or the application changed); a failed collection is tried again too."""
        async with self._lock:
            self.error = None
            self._whole_suite = True
            await self.spawn()
            await self._wait_ready()

    async def exit_status(self, pid: int, timeout: float) -> int | None:
        event = self._exit_events.setdefault(pid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self._exited.get(pid)

    async def close(self) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), procs.KILL_WAIT)
            await procs.terminate_group(process.pid)
            await process.wait()
            self.context.tracker.discard(process.pid)
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 2.0)
        self._tasks = []
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class PytestSession:
    """One testpool worker's forked pytest. Replaced by a new fork after a crash or timeout."""

    def __init__(self, zygote: Zygote, worker: WorkerContext) -> None:
        self.zygote = zygote
        self.worker = worker
        self._conn: Connection | None = None

    async def start(self) -> None:
        if self._conn is None:
            with contextlib.suppress(ZygoteError):  # reported by the first test instead
                self._conn = await self.zygote.fork(self.worker)

    async def run(self, case: TestCase, timeout: float) -> Outcome:
        started = time.monotonic()
        if self._conn is None:
            try:
                self._conn = await self.zygote.fork(self.worker)
            except ZygoteError as error:
                lines = str(error).split("\n", 1)
                return Outcome(Status.FAILED, 0.0, lines[1] if len(lines) > 1 else "", lines[0])
        conn = self._conn
        mark = _size(conn.output)
        try:
            # JSON, one line: a node id may hold a line break (pytest can be told to keep it).
            conn.writer.write((json.dumps(case.id) + "\n").encode())
            await conn.writer.drain()
            line = await asyncio.wait_for(conn.reader.readline(), timeout)
        except asyncio.CancelledError:
            # Interrupted, or the worker's server died: the test must not outlive us.
            await asyncio.shield(self._stop())
            raise
        except TimeoutError:
            await self._stop()
            output = _read_from(conn.output, mark)
            return Outcome(Status.TIMEOUT, timeout, output, f"timed out after {timeout:g} s")
        except (ConnectionError, ValueError):
            line = b""
        if not line:
            await self._stop()
            status = await self.zygote.exit_status(conn.pid, 2.0)
            code = f"status {status}" if status is not None else "unknown status"
            return Outcome(
                Status.FAILED,
                time.monotonic() - started,
                _read_from(conn.output, mark),
                f"the worker's pytest process exited ({code}) while running this test",
            )
        try:
            verdict = json.loads(line)
        except ValueError:  # a fork that died mid-write
            await self._stop()
            return Outcome(
                Status.FAILED,
                time.monotonic() - started,
                _read_from(conn.output, mark),
                "the worker's pytest process sent a broken result (it probably crashed)",
            )
        if verdict.get("outcome") == "missing":
            return not_collected(None if self.zygote.partial else self.zygote.collected)
        return Outcome(
            OUTCOMES.get(verdict["outcome"], Status.FAILED),
            float(verdict.get("duration", 0.0)),
            verdict.get("output", ""),
            verdict.get("message", ""),
        )

    async def recollect(
        self,
        purge: list[Path],
        modules: list[Path],
        timeout: float,
        *,
        bytecode: Path | None = None,
        describe: bool = False,
    ) -> Recollected | None:
        """``--watch``: have this worker's pytest forget the modules of ``purge`` and collect
        the test files ``modules`` again, as the zygote does, keeping its session fixtures.
        Its answer lists every test only if ``describe``. None if it has no pytest yet (the
        next test forks one from the zygote) or could not (it is then stopped, likewise)."""
        conn = self._conn
        if conn is None:
            return None
        request = {"recollect": _request(purge, modules, bytecode, describe=describe)}
        try:
            conn.writer.write((json.dumps(request) + "\n").encode())
            await conn.writer.drain()
            reply = json.loads(await asyncio.wait_for(conn.reader.readline(), timeout))
            return Recollected.from_dict(reply["recollected"])
        except (ConnectionError, TimeoutError, ValueError, KeyError, TypeError):
            await self._stop()
            return None

    async def close(self) -> None:
        """Say we are done and wait until the fork has finalized its session fixtures.

        The fork then winds down on its own (plugins' session-finish hooks) while testpool
        stops the servers; the run's cleanup waits for it, within the usual deadline.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.writer.write_eof()
            await asyncio.wait_for(conn.reader.read(), procs.KILL_WAIT)
        except (OSError, TimeoutError):
            await procs.terminate_group(conn.pid)
        finally:
            conn.writer.close()

    async def _stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.writer.close()
            await procs.terminate_group(conn.pid)
            self.zygote.context.tracker.discard(conn.pid)


def _request(
    purge: list[Path], modules: list[Path], bytecode: Path | None, *, describe: bool
) -> dict[str, Any]:
    """A re-collection request (see ``pytest_plugin.recollect``). The process that lists the
    tests is the first: it compiles the changed modules for the others."""
    request: dict[str, Any] = {
        "purge": list(map(str, purge)),
        "modules": list(map(str, modules)),
        "describe": describe,
        "compile": describe,
    }
    if bytecode is not None:
        request["bytecode"] = str(bytecode)
    return request


def not_collected(collected: int | None) -> Outcome:
    """The verdict for a test that discovery found and the workers' pytest did not collect
    (``collected``: how many it did, when it collected everything it was going to up front)."""
    where = (
        f"it collected {collected} test(s) where discovery found this one"
        if collected is not None
        else "it collected the test's file, where discovery found this one"
    )
    message = f"the workers' pytest did not collect this test ({where})"
    return Outcome(Status.FAILED, 0.0, message + "\n" + NOT_COLLECTED_CAUSES, message)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    """What the worker process printed outside pytest's capture since ``offset`` (its tail)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(offset, _size(path) - OUTPUT_TAIL))
            return decode(handle.read())
    except FileNotFoundError:
        return ""
