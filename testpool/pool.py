"""The worker pool: N dev servers, each in its own tmux session, port, data folder and environment.

The pool launches workers (all at once), waits for them to be healthy (concurrently), tells
whether a worker's server is still alive (and when it dies), restarts a dead one with a fresh
``DATA_DIR`` up to :data:`MAX_RESTARTS` times, and shuts everything down in stages. Every process
group and folder it creates is written to the run's journal first, so ``testpool clean`` or the
reaper can finish the job if this process cannot.

Called by the runner. Knows nothing about tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from testpool import procs
from testpool.diagnosis import Listener, PortWatch, timeout_hint
from testpool.errors import (
    ConfigError,
    HealthTimeoutError,
    InfrastructureError,
    PortInUseError,
    ServerExitedError,
    WorkerStartError,
)
from testpool.fsutil import tail
from testpool.health import probe, wait_healthy
from testpool.isolation import make_data_dir, remove_dir, reseed_data_dir, write_files
from testpool.placeholders import collection_values, render, render_env, uses_worker, worker_values
from testpool.procs import RUN_ID_VARIABLE
from testpool.sanitize import block, squeeze_blank_lines
from testpool.tmux import TMUX_VARIABLES, SpawnSpec, TmuxServer, log_pipe_command

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.secrets import Redactor
    from testpool.state import RunJournal

MAX_RESTARTS = 2  # per worker; past that it is retired
LOG_TAIL_LINES = 20
TAIL_LINE_LIMIT = 2000  # characters of one server line kept for error messages
EXIT_STATUS_WAIT = 1.0
# What tmux writes into a pane whose command ended (remain-on-exit).
_PANE_IS_DEAD = re.compile(r"^Pane is dead( \(.*\))?\s*$")


class WorkerState:
    STARTING = "starting"
    IDLE = "idle"
    RUNNING = "running"
    RESTARTING = "restarting"
    RETIRED = "retired"
    STOPPED = "stopped"


@dataclass
class Worker:
    """One worker slot and its current server (``generation`` counts restarts)."""

    index: int
    port: int
    data_dir: Path
    server_env: dict[str, str]  # set on the tmux session (on top of the server's global env)
    log: WorkerLog
    generation: int = 0
    pane_pid: int = 0
    restarts: int = 0
    state: str = WorkerState.STARTING
    current_test: str | None = None
    since: float = 0.0
    startup_time: float = 0.0
    startup_cpu: float = 0.0  # CPU seconds its server took from launch until healthy

    @property
    def session(self) -> str:
        return f"worker-{self.index}" + (f"-r{self.generation}" if self.generation else "")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class WorkerLog:
    """The server's output, from tmux through a FIFO, redacted, appended to ``logs/worker-N.log``.

    testpool reads the FIFO itself (rather than letting tmux write the file) so that a secret
    the server prints never reaches the disk.
    """

    def __init__(self, path: Path, fifo: Path, redact: Redactor) -> None:
        self.path = path
        self.fifo = fifo
        self._redact = redact
        self._lines: deque[str] = deque(maxlen=200)
        # The line being received. A bytearray grows in place; only each new chunk is searched
        # for a line break, so a line of any length costs time linear in its size.
        self._partial = bytearray()
        self.activity = asyncio.Event()  # set whenever the server prints something
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(fifo, 0o600)
        # Read-write, so the FIFO never reports end-of-file between two writers (restarts).
        self._fd: int | None = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        # Binary, counting what is written: attempts record the log's size when they start and
        # end, and a failure's report shows that slice (see :mod:`testpool.evidence`).
        self._out = path.open("wb")
        self.size = 0
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self.drain)

    def note(self, text: str) -> None:
        self._write_line(f"----- testpool: {text} -----")

    def drain(self) -> None:
        """Move whatever is in the FIFO to the log file."""
        if self._fd is None:
            return
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not chunk:
                break
            self.activity.set()
            first, newline, rest = chunk.partition(b"\n")
            self._partial += first
            if not newline:
                continue
            self._end_line()
            *complete, last = rest.split(b"\n")
            for raw in complete:
                self._write_line(raw.decode("utf-8", errors="replace").rstrip("\r"))
            self._partial += last
        self._out.flush()

    def _end_line(self) -> None:
        line, self._partial = self._partial, bytearray()
        self._write_line(line.decode("utf-8", errors="replace").rstrip("\r"))

    def _write_line(self, line: str) -> None:
        clean = self._redact(line)
        # The tail ends up in error messages: a line there is cut short.
        if len(clean) > TAIL_LINE_LIMIT:
            clean_tail = clean[: TAIL_LINE_LIMIT - 40] + f"… [{len(clean)} characters]"
        else:
            clean_tail = clean
        self._lines.append(clean_tail)
        data = (clean + "\n").encode("utf-8", errors="replace")
        self._out.write(data)
        self.size += len(data)

    def offset(self) -> int:
        """How many bytes the log file holds, with whatever the server printed so far."""
        self.drain()
        return self.size

    async def settle(self, quiet: float = 0.1, limit: float = 1.0) -> None:
        """Wait until nothing new has arrived for ``quiet`` seconds (``limit`` at most): what a
        server printed just before it died is still on its way through tmux and the FIFO."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        size, since = self.offset(), loop.time()
        while loop.time() - since < quiet and loop.time() < deadline:
            await asyncio.sleep(0.01)
            if (now := self.offset()) != size:
                size, since = now, loop.time()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        self.drain()
        return "\n".join(list(self._lines)[-lines:])

    def close(self) -> None:
        if self._fd is None:
            return
        self.drain()
        if self._partial:
            self._end_line()
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self.fifo.unlink()


@dataclass
class RunSettings:
    """What the pool and the shared services need from the run (kept apart from Config to
    keep them testable)."""

    config: Config
    run_id: str
    secrets: Mapping[str, str]
    redact: Redactor
    scratch: Path
    logs_dir: Path
    journal: RunJournal | None = None
    base_environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class PoolSettings(RunSettings):
    """What the pool needs from the run."""

    # Run-wide placeholder values beyond the run's own: the shared services' ports and URLs
    # ({services.NAME.port}), filled with the worker's in server, env, health path and files.
    values: Mapping[str, str] = field(default_factory=dict)


class Pool:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.config = settings.config
        self.socket_name = f"testpool-{settings.run_id}"
        self.workers: list[Worker] = []
        self._tmux: TmuxServer | None = None
        self._client = httpx.AsyncClient(trust_env=False)
        self._on_change: Callable[[Worker], None] = lambda worker: None
        self._templates = _read_templates(self.config)

    @property
    def attach_hint(self) -> str:
        return f"tmux -L {self.socket_name} attach -t worker-N"

    def on_change(self, callback: Callable[[Worker], None]) -> None:
        """Called on every worker state change (the live view listens)."""
        self._on_change = callback

    def set_state(self, worker: Worker, state: str) -> None:
        worker.state = state
        self._on_change(worker)

    # --- environment -----------------------------------------------------------------------

    def global_env(self) -> dict[str, str]:
        """The tmux server's environment: ours, the config's ``env``, the secrets, the run id.

        The run id marks the tmux client and server and the log pipes tmux starts (they
        inherit the server's environment), so the reaper and ``testpool clean`` find them even
        when the run was killed while tmux was still starting the workers.
        """
        env = {k: v for k, v in self.settings.base_environ.items() if k not in TMUX_VARIABLES}
        # An `env` value made of a worker's values gets its stand-in here, outside any worker
        # (pytest collecting), and the worker's own value on the worker's session.
        outside = {
            **collection_values(self.settings.run_id, self.config.services),
            **self.settings.values,
        }
        env.update(render_env(self.config.env, outside))
        env.update(self.settings.secrets)
        env[RUN_ID_VARIABLE] = self.settings.run_id
        return env

    def worker_env(self, index: int, data_dir: Path) -> dict[str, str]:
        """The variables that differ per worker (set on its tmux session)."""
        env = {
            "PORT": str(self.config.port(index)),
            "DATA_DIR": str(data_dir),
            "TESTPOOL_WORKER": str(index),
            RUN_ID_VARIABLE: self.settings.run_id,
        }
        if "API_TOKEN" not in self.settings.secrets and "API_TOKEN" not in self.config.env:
            env["API_TOKEN"] = f"test-token-{index}"
        values = self.values(index, data_dir)
        for name, template in self.config.env.items():
            if uses_worker(template) and name not in self.settings.secrets:
                env[name] = render(template, values)
        return env

    def values(self, index: int, data_dir: Path) -> dict[str, str]:
        """Worker ``index``'s placeholder values (see :mod:`testpool.placeholders`)."""
        return {
            **worker_values(self.settings.run_id, index, self.config.port(index), data_dir),
            **self.settings.values,
        }

    def command(self, worker: Worker) -> str:
        """The server command of ``worker``, its placeholders filled in."""
        values = self.values(worker.index, worker.data_dir)
        return render(self.config.server, values, shell=True)

    def health_url(self, worker: Worker) -> str:
        values = self.values(worker.index, worker.data_dir)
        return worker.base_url + render(self.config.health_path, values)

    def test_env(self, worker: Worker) -> dict[str, str]:
        """Everything a test on ``worker`` gets: the server's environment plus TEST_BASE_URL."""
        env = self.global_env()
        env.update(worker.server_env)
        env["TEST_BASE_URL"] = worker.base_url
        return env

    # --- start -----------------------------------------------------------------------------

    def launch(self, count: int) -> list[Worker]:
        """Check the ports, then start tmux and every worker's server (not yet healthy)."""
        ports = [self.config.port(index) for index in range(count)]
        check_ports(ports)
        self._tmux = TmuxServer(self.socket_name)
        for index in range(count):
            data_dir = self._make_data_dir(index)
            fifo = self.settings.scratch / f"worker-{index}.fifo"
            log = WorkerLog(
                self.settings.logs_dir / f"worker-{index}.log", fifo, self.settings.redact
            )
            worker = Worker(index, ports[index], data_dir, self.worker_env(index, data_dir), log)
            self.workers.append(worker)
        journal = self.settings.journal
        if journal:
            # Recorded before anything runs, so a crash from here on leaves nothing unknown
            # (the data folders are inside the run's folder, which is recorded already).
            journal.record_start(self.socket_name, ports, [])
        pids = self._tmux.start(self.global_env(), [self._spec(w) for w in self.workers])
        for worker, pid in zip(self.workers, pids, strict=True):
            worker.pane_pid = pid
            self.set_state(worker, WorkerState.STARTING)
        if journal:
            journal.add_processes([(pid, "dev server") for pid in pids])
        return self.workers

    def _spec(self, worker: Worker) -> SpawnSpec:
        return SpawnSpec(
            session=worker.session,
            command=self.command(worker),
            cwd=self.config.root,
            environment=worker.server_env,
            log_command=log_pipe_command(worker.log.fifo),
        )

    def _make_data_dir(self, index: int) -> Path:
        folder = make_data_dir(self.config.seed_path, self.settings.scratch)
        self._write_files(index, folder)
        return folder

    def _write_files(self, index: int, folder: Path) -> None:
        """Render the ``files`` templates into a worker's fresh or re-seeded ``DATA_DIR``."""
        if self._templates:
            values = self.values(index, folder)
            write_files(
                folder, {dest: render(text, values) for dest, text in self._templates.items()}
            )

    def reseed(self, worker: Worker) -> None:
        """Empty and re-seed ``worker``'s ``DATA_DIR`` (``isolation = "test"``, between tests)."""
        reseed_data_dir(worker.data_dir, self.config.seed_path)
        self._write_files(worker.index, worker.data_dir)

    def _spawn(self, worker: Worker) -> None:
        """Start one server again (a restart)."""
        assert self._tmux is not None
        worker.pane_pid = self._tmux.spawn(self._spec(worker))
        if self.settings.journal:
            self.settings.journal.add_processes([(worker.pane_pid, "dev server")])
        self.set_state(worker, WorkerState.STARTING)

    async def wait_ready(self, worker: Worker) -> None:
        """Wait until ``worker`` answers its health check; raise a full error if it does not."""
        url = self.health_url(worker)
        watch = PortWatch(lambda: self.listeners(worker), worker.port)
        try:
            worker.startup_time = await wait_healthy(
                self._client,
                url,
                interval=self.config.health_interval,
                timeout=self.config.startup_timeout,
                is_alive=lambda: self.alive(worker),
                wake=worker.log.activity,
                diagnose=watch.check,
            )
            # Measured once healthy: the cost of a start (workers = "auto" plans with it). In a
            # thread: the process table is read, and other workers are still being polled.
            worker.startup_cpu = await asyncio.to_thread(procs.session_cpu, worker.pane_pid)
        except WorkerStartError as error:
            printed = self.log_tail(worker)
            reason = error.message
            if isinstance(error, HealthTimeoutError):
                hint = timeout_hint(self.listeners(worker), worker.port)
                reason = f"{reason}; {hint}" if hint else reason
            if isinstance(error, ServerExitedError):
                how = await self._exit_status(worker)
                ended = f"the server exited with {how}" if how else "the server exited"
                reason = (
                    f"{ended} before it became healthy" if printed else f"{ended} without output"
                )
            raise type(error)(
                f"worker {worker.index} (port {worker.port}) failed to start: {reason}; "
                f"command: {self.command(worker)}",
                detail=printed,
            ) from None
        self.set_state(worker, WorkerState.IDLE)

    def listeners(self, worker: Worker) -> list[Listener]:
        """Where the worker's server processes listen (its tmux pane leads their session)."""
        if worker.pane_pid <= 0:
            return []
        return [
            Listener(port, address) for address, port in procs.session_listeners(worker.pane_pid)
        ]

    async def _exit_status(self, worker: Worker) -> str | None:
        """How the worker's server ended, as tmux saw it (tmux may take a moment to notice)."""
        if self._tmux is None:
            return None
        deadline = asyncio.get_running_loop().time() + EXIT_STATUS_WAIT
        while (how := self._tmux.exit_status(worker.session)) is None:
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.02)
        return how

    def log_tail(self, worker: Worker, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the server printed, for an error message: from the log, or from the
        pane itself if the log has nothing; without escape sequences, blank runs or the line
        tmux adds to a dead pane. Empty if the server printed nothing."""
        # Read well past ``lines``: blank runs are squeezed out before the tail is taken.
        text = worker.log.tail(LOG_TAIL_LINES * 10)
        if not text.strip() and self._tmux is not None:
            pane = self._tmux.capture(worker.session, LOG_TAIL_LINES * 10)
            kept = [line for line in pane.splitlines() if not _PANE_IS_DEAD.match(line)]
            text = self.settings.redact("\n".join(kept))
        return tail(squeeze_blank_lines(block(text)), lines)

    # --- health during the run -------------------------------------------------------------

    def alive(self, worker: Worker) -> bool:
        return worker.pane_pid > 0 and procs.pid_alive(worker.pane_pid)

    async def healthy(self, worker: Worker) -> bool:
        return self.alive(worker) and await probe(self._client, self.health_url(worker))

    async def wait_for_death(self, worker: Worker) -> None:
        """Return when the worker's current server process exits."""
        if worker.pane_pid <= 0:
            return  # stopped
        await procs.watch_exit(worker.pane_pid)

    async def restart(self, worker: Worker, reason: str) -> bool:
        """Replace a dead or sick server with a fresh one on a fresh ``DATA_DIR``.

        Returns False (and retires the worker) past :data:`MAX_RESTARTS` or if the new server
        does not become healthy.
        """
        await self._stop_server(worker)
        if worker.restarts >= MAX_RESTARTS:
            self.set_state(worker, WorkerState.RETIRED)
            worker.log.note(f"worker retired after {worker.restarts} restarts ({reason})")
            return False
        worker.restarts += 1
        try:
            await self._replace(worker, reason)
        except WorkerStartError as error:
            worker.log.note(f"restart failed: {error.message}")
            await self._stop_server(worker)
            self.set_state(worker, WorkerState.RETIRED)
            return False
        return True

    async def renew(self, worker: Worker, reason: str) -> None:
        """``--watch``: replace the worker's server with one started from the sources as they
        are now, on a fresh ``DATA_DIR`` (the ``files`` templates read again). Not counted as
        a restart; a retired worker comes back. Raises :class:`WorkerStartError` (with the
        server's log tail) if the new server does not become healthy; the worker is then
        stopped until the next renewal."""
        await self._stop_server(worker)
        worker.restarts = 0
        self._templates = _read_templates(self.config)
        try:
            await self._replace(worker, reason)
        except WorkerStartError:
            await self._stop_server(worker)
            self.set_state(worker, WorkerState.STOPPED)
            raise

    async def _replace(self, worker: Worker, reason: str) -> None:
        """Start a new server for ``worker`` on a fresh ``DATA_DIR`` (the old one is stopped)
        and wait until it is healthy."""
        worker.generation += 1
        self.set_state(worker, WorkerState.RESTARTING)
        worker.log.note(f"restarting the server ({reason})")
        self._drop_data_dir(worker.data_dir)
        worker.data_dir = self._make_data_dir(worker.index)
        worker.server_env = self.worker_env(worker.index, worker.data_dir)
        self._spawn(worker)
        await self.wait_ready(worker)

    # --- stop ------------------------------------------------------------------------------

    async def _stop_server(self, worker: Worker) -> None:
        if worker.pane_pid:
            await procs.terminate_group(worker.pane_pid)
            if self.settings.journal:
                self.settings.journal.remove_process(worker.pane_pid)
            # Its process group is gone: never signal that id again (it may be reused).
            worker.pane_pid = 0
        if self._tmux is not None:
            self._tmux.kill_session(worker.session)

    def _drop_data_dir(self, folder: Path) -> None:
        remove_dir(folder)

    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL every server at once."""
        for worker in self.workers:
            if worker.pane_pid:
                procs.kill_group_now(worker.pane_pid)

    async def shutdown(self) -> None:
        """Stop every server (in stages), the tmux server, and remove the data folders."""
        await asyncio.gather(
            *(procs.terminate_group(w.pane_pid) for w in self.workers if w.pane_pid)
        )
        if self._tmux is not None:
            self._tmux.kill()
        for worker in self.workers:
            worker.log.close()
            self._drop_data_dir(worker.data_dir)
            if worker.state != WorkerState.RETIRED:
                worker.state = WorkerState.STOPPED
        await self._client.aclose()


def _read_templates(config: Config) -> dict[str, str]:
    """The ``files`` templates, read once per run (checked when the config was loaded)."""
    templates = {}
    for dest, path in config.file_templates().items():
        try:
            templates[dest] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"'files.{dest}': cannot read {path}: {error}") from None
    return templates


def check_ports(ports: list[int]) -> None:
    """Raise :class:`PortInUseError` naming every busy port and, where readable, its holder."""
    busy = [port for port in ports if not port_is_free(port)]
    holders = procs.listeners(ports)
    busy = sorted(set(busy) | set(holders))
    if busy:
        described = ", ".join(
            f"{port} (held by {holders.get(port, 'an unknown process')})" for port in busy
        )
        raise PortInUseError(
            f"worker port(s) already in use: {described}. testpool never stops a process it "
            "did not start: free the port(s) or change port_base"
        )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        # SO_REUSEADDR: a port in TIME_WAIT from an earlier run is free; a listener is not.
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise InfrastructureError(f"cannot check port {port}: {error.strerror}") from None
    return True
