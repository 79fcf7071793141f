"""Shared services: a database, a cache, a mock API -- started once per run, before the workers,
shared by all of them, and stopped after them.

Each service is a tracked subprocess (not a tmux session): it leads its own process group and
carries the run's id, its pid is in the run's journal before anything waits on it, its exit is
seen at once through a pidfd, and its exit status is its own, not a terminal's. Its output goes
through a FIFO that testpool reads (:class:`~testpool.pool.WorkerLog`, as for the workers), so
secrets are redacted before anything reaches ``logs/<run id>/services/NAME.log``.

Services start in dependency order -- each as soon as the services it depends on are ready,
independent ones at once -- and are probed with backoff (``http``: the URL answers 200;
``tcp``: the address accepts a connection; ``process``: it stayed alive N seconds). They stop
in reverse order: a service gets the staged stop (SIGTERM to its group, grace, SIGKILL) once
every service that depends on it has stopped. One that dies mid-run can be restarted on the
same port, up to :data:`MAX_RESTARTS` times.

Called by the run. Knows nothing about tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from testpool import procs
from testpool.config_services import variable_prefix
from testpool.errors import PortInUseError, ServiceError
from testpool.fsutil import tail
from testpool.health import probe as http_probe
from testpool.placeholders import (
    collection_values,
    render,
    render_env,
    run_values,
    service_values,
)
from testpool.pool import LOG_TAIL_LINES, RunSettings, WorkerLog, port_is_free
from testpool.procs import RUN_ID_VARIABLE
from testpool.requirements import closure
from testpool.sanitize import block, squeeze_blank_lines

if TYPE_CHECKING:
    from testpool.config_services import ServiceConfig

MAX_RESTARTS = 2  # per service and run; the next death stops the run
PROBE_FIRST_PAUSE = 0.05  # seconds; doubles after every failed probe ...
PROBE_MAX_PAUSE = 1.0  # ... up to this
PROBE_TIMEOUT = 2.0
SHELL = "/bin/sh"


class ServiceState:
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class Service:
    """One service of this run: its configuration, where it listens, and its current process."""

    config: ServiceConfig
    port: int | None
    url: str | None
    data_dir: Path
    log: WorkerLog
    process: subprocess.Popen[bytes] | None = None
    state: str = ServiceState.PENDING
    restarts: int = 0
    ready_after: float = 0.0  # seconds from its start until it was ready (the last start)
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def variables(self) -> dict[str, str]:
        """``NAME_PORT`` and ``NAME_URL``, for the workers, the tests and dependent services."""
        prefix = variable_prefix(self.name)
        found = {}
        if self.port is not None:
            found[f"{prefix}_PORT"] = str(self.port)
        if self.url:
            found[f"{prefix}_URL"] = self.url
        return found


@dataclass
class ServiceSettings(RunSettings):
    """What the services need from the run."""

    avoid_ports: frozenset[int] = frozenset()  # the workers' ports: never given to a service


class Services:
    """The services one run starts. Lifecycle: :meth:`allocate` (ports, no process),
    :meth:`launch` (start them all, in dependency order), :meth:`ready` (wait for some or
    all), then :meth:`wait_for_death` / :meth:`restart` while tests run, :meth:`stop`."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.config = settings.config
        self.services: dict[str, Service] = {}  # in start order
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(trust_env=False)
        self._on_death: Callable[[], None] = lambda: None

    def on_death(self, callback: Callable[[], None]) -> None:
        """Called as soon as a service's process exits (before anyone awaiting
        :meth:`wait_for_death` runs), so that no test starts on a dead service."""
        self._on_death = callback

    @property
    def names(self) -> list[str]:
        return list(self.services)

    # --- before anything runs --------------------------------------------------------------

    def allocate(self, names: Iterable[str]) -> None:
        """Decide every service's port and URL (in start order). Starts nothing."""
        for name in names:
            service_config = self.config.services[name]
            port = service_config.port
            if service_config.auto_port:
                port = free_port(self.settings.avoid_ports | self._ports())
            data_dir = self.settings.scratch / f"service-{name}"
            values = {
                **run_values(self.settings.run_id),
                **self.placeholder_values(),
                "data_dir": str(data_dir),
            }
            if port is not None:
                values["port"] = str(port)
            url = render(service_config.url, values) if service_config.url else None
            log = WorkerLog(
                self.settings.logs_dir / "services" / f"{name}.log",
                self.settings.scratch / f"service-{name}.fifo",
                self.settings.redact,
            )
            self.services[name] = Service(service_config, port, url, data_dir, log)

    def _ports(self) -> set[int]:
        return {s.port for s in self.services.values() if s.port is not None}

    @property
    def environment(self) -> dict[str, str]:
        """``NAME_PORT``/``NAME_URL`` of every service of the run (for workers and tests)."""
        env: dict[str, str] = {}
        for service in self.services.values():
            env.update(service.variables())
        return env

    def placeholder_values(self) -> dict[str, str]:
        """``{services.NAME.port}`` and ``{services.NAME.url}`` of the run's services (the
        pool fills them in the workers' server, env, health path and files)."""
        return service_values((s.name, s.port, s.url or "") for s in self.services.values())

    # --- start -----------------------------------------------------------------------------

    def launch(self) -> None:
        """Start every service as soon as its dependencies are ready (independent ones at
        once). Returns at once; :meth:`ready` waits, and raises the first failure."""
        for name in self.services:
            if name not in self._starting:
                self._starting[name] = asyncio.ensure_future(self._bring_up(name))

    async def ready(self, names: Iterable[str] | None = None) -> None:
        """Wait until ``names`` (default: all) are ready; raise :class:`ServiceError` if one
        of them (or a dependency) cannot start."""
        wanted = [self._starting[n] for n in (self.names if names is None else names)]
        for task in wanted:
            await asyncio.shield(task)

    async def _bring_up(self, name: str) -> None:
        service = self.services[name]
        for dependency in service.config.dependencies():
            if dependency in self._starting:
                try:
                    await asyncio.shield(self._starting[dependency])
                except ServiceError:
                    service.state = ServiceState.FAILED
                    raise ServiceError(
                        f"service {name} was not started: service {dependency}, which it "
                        "depends on, did not start"
                    ) from None
        if service.port is not None and not service.config.auto_port:
            check_port(name, service.port)
        service.data_dir.mkdir(mode=0o700, exist_ok=True)
        await self._start_once(service)

    async def _start_once(self, service: Service) -> None:
        """Spawn ``service`` and wait until its probe passes; raise a full error if not."""
        self._spawn(service)
        started = time.monotonic()
        try:
            await self._wait_ready(service)
        except ServiceError as error:
            service.state = ServiceState.FAILED
            raise ServiceError(
                f"service {service.name} failed to start: {error.message}; "
                f"command: {self.command(service)}",
                detail=self.log_tail(service),
            ) from None
        service.ready_after = time.monotonic() - started
        service.state = ServiceState.READY
        service.log.note(f"ready after {service.ready_after:.2f}s")

    def command(self, service: Service) -> str:
        return render(service.config.command, self._values(service), shell=True)

    def _values(self, service: Service) -> dict[str, str]:
        """The placeholders a service's own command, env and probe may use."""
        values = {
            **run_values(self.settings.run_id),
            **self.placeholder_values(),
            "data_dir": str(service.data_dir),
        }
        if service.port is not None:
            values["port"] = str(service.port)
        if service.url:
            values["url"] = service.url
        return values

    def _environment(self, service: Service) -> dict[str, str]:
        env = dict(self.settings.base_environ)
        values = self._values(service)
        # The run's `env` as code outside any worker sees it (per-worker values: stand-ins).
        outside = {
            **collection_values(self.settings.run_id, self.config.services),
            **self.placeholder_values(),
        }
        env.update(render_env(self.config.env, outside))
        env.update(self.settings.secrets)
        for name in closure([service.name], self.config.services):
            env.update(self.services[name].variables())
        if service.port is not None:
            env["PORT"] = str(service.port)
        env.update(render_env(service.config.env, values))
        env[RUN_ID_VARIABLE] = self.settings.run_id
        return env

    def _spawn(self, service: Service) -> None:
        command = self.command(service)
        service.state = ServiceState.STARTING
        service.exited = asyncio.Event()
        where = f" on port {service.port}" if service.port is not None else ""
        service.log.note(f"starting{where}: {command}")
        # Our reader holds the FIFO open (read-write), so this open does not block; the
        # service writes to it blocking, as to any pipe.
        writer = os.open(service.log.fifo, os.O_WRONLY)
        try:
            service.process = subprocess.Popen(
                [SHELL, "-c", command],
                cwd=self.config.root,
                env=self._environment(service),
                stdin=subprocess.DEVNULL,
                stdout=writer,
                stderr=writer,
                start_new_session=True,  # its own group: one signal stops all it started
            )
        except (OSError, ValueError) as error:  # ValueError: a NUL in its environment
            service.process = None
            raise ServiceError(f"service {service.name} cannot be started: {error}") from None
        finally:
            os.close(writer)
        if self.settings.journal is not None:
            self.settings.journal.add_processes([(service.pid, f"service {service.name}")])
        self._watchers.append(asyncio.ensure_future(self._watch(service, service.process)))

    async def _watch(self, service: Service, process: subprocess.Popen[bytes]) -> None:
        await procs.watch_exit(process.pid)
        process.poll()  # reap it: its exit status is known from now on
        if service.process is process:
            service.exited.set()
            self._on_death()

    async def _wait_ready(self, service: Service) -> None:
        """Probe until the service is ready, with backoff; a probe also follows its output."""
        probe = service.config.probe
        timeout = service.config.startup_timeout or self.config.startup_timeout
        if probe.kind == "process":
            try:
                await asyncio.wait_for(service.exited.wait(), probe.seconds)
            except TimeoutError:
                return
            raise ServiceError(f"it {self.how_it_ended(service)} within {probe.seconds:g} s")
        target = render(probe.target, self._values(service))
        deadline = time.monotonic() + timeout
        pause = PROBE_FIRST_PAUSE
        last = "no answer yet"
        while True:
            if service.exited.is_set():
                raise ServiceError(f"it {self.how_it_ended(service)} before it was ready")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceError(f"not ready after {timeout:g} s ({probe.kind} {target}: {last})")
            ok, last = await self._probe(probe.kind, target, min(PROBE_TIMEOUT, remaining))
            if ok:
                return
            await _pause(min(pause, max(0.0, deadline - time.monotonic())), service)
            pause = min(pause * 2, PROBE_MAX_PAUSE)

    async def _probe(self, kind: str, target: str, timeout: float) -> tuple[bool, str]:
        if kind == "http":
            try:
                if await http_probe(self._client, target, timeout):
                    return True, ""
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:  # not a URL
                return False, f"{type(error).__name__}: {error}"
            return False, "no HTTP 200"
        host, _, port = target.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout
            )
        except (OSError, TimeoutError, ValueError) as error:
            return False, type(error).__name__
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, ""

    def how_it_ended(self, service: Service) -> str:
        """``exited with status 1``, ``was killed by signal 9``, or ``exited``."""
        code = service.process.poll() if service.process is not None else None
        if code is None:
            return "exited"
        if code < 0:
            return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def log_tail(self, service: Service, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the service printed, without escape sequences or blank runs."""
        text = service.log.tail(lines * 10)
        kept = [line for line in text.splitlines() if not line.startswith("----- testpool:")]
        return tail(squeeze_blank_lines(block("\n".join(kept))), lines)

    # --- while tests run -------------------------------------------------------------------

    def alive(self, name: str) -> bool:
        service = self.services[name]
        return service.process is not None and not service.exited.is_set()

    async def wait_for_death(self, names: Iterable[str]) -> str:
        """Return the name of the first of ``names`` whose process exits (never returns for
        no names)."""
        watched = {asyncio.ensure_future(self.services[n].exited.wait()): n for n in names}
        if not watched:
            await asyncio.Future()  # nothing to watch: wait for ever (until cancelled)
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in watched:
                task.cancel()
        return watched[next(iter(done))]

    async def restart(self, name: str) -> None:
        """Start a service that died again, on the same port and data folder. Raises
        :class:`ServiceError` (with its log tail) past :data:`MAX_RESTARTS` or if it does
        not become ready."""
        service = self.services[name]
        ended = self.how_it_ended(service)
        await self._stop_one(service)  # whatever it left in its group
        if service.restarts >= MAX_RESTARTS:
            service.state = ServiceState.FAILED
            raise ServiceError(
                f"service {name} {ended} during the run, after {service.restarts} restart(s); "
                f"log: {self.log_path(service)}",
                detail=self.log_tail(service),
            )
        service.restarts += 1
        service.state = ServiceState.RESTARTING
        service.log.note(f"restarting ({ended})")
        try:
            await self._start_once(service)
        except ServiceError as error:
            raise ServiceError(
                f"service {name} {ended} during the run and did not restart: {error.message}",
                detail=error.detail,
            ) from None

    def log_path(self, service: Service) -> str:
        from testpool.fsutil import display_path

        return display_path(service.log.path, self.config.root)

    # --- stop ------------------------------------------------------------------------------

    async def _stop_one(self, service: Service) -> None:
        if service.process is None:
            return
        await procs.terminate_group(service.pid)
        service.process.poll()
        if self.settings.journal is not None:
            self.settings.journal.remove_process(service.pid)

    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL every service at once."""
        for service in self.services.values():
            if service.process is not None:
                procs.kill_group_now(service.pid)

    async def stop(self) -> None:
        """Stop every service in reverse dependency order, each with the staged stop, and
        close their logs. Never raises for a service that is already gone."""
        for task in [*self._starting.values(), *self._watchers]:
            task.cancel()
        await asyncio.gather(*self._starting.values(), *self._watchers, return_exceptions=True)
        stopped: dict[str, asyncio.Future[None]] = {
            name: asyncio.get_running_loop().create_future() for name in self.services
        }

        async def stop(service: Service) -> None:
            dependents = [
                stopped[other.name]
                for other in self.services.values()
                if service.name in other.config.dependencies()
            ]
            try:
                await asyncio.gather(*dependents)
                await self._stop_one(service)
            finally:
                stopped[service.name].set_result(None)
                if service.state != ServiceState.FAILED:
                    service.state = ServiceState.STOPPED

        await asyncio.gather(*(stop(s) for s in self.services.values()), return_exceptions=True)
        for service in self.services.values():
            service.log.close()
        await self._client.aclose()

    # --- reports ---------------------------------------------------------------------------

    def details(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "port": s.port,
                "url": s.url,
                "state": s.state,
                "ready": round(s.ready_after, 4),
                "restarts": s.restarts,
                "log": self.log_path(s),
            }
            for s in self.services.values()
        ]

    def describe(self) -> str:
        """``db (port 41235), mock (port 41236)``, for the line that says what started."""
        return ", ".join(
            s.name + (f" (port {s.port})" if s.port is not None else "")
            for s in self.services.values()
        )


async def _pause(seconds: float, service: Service) -> None:
    """Wait ``seconds``, or less when the service prints something (often "ready")."""
    activity = service.log.activity
    activity.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(activity.wait(), seconds)


def free_port(avoid: Iterable[int] = ()) -> int:
    """A port no one listens on now (the kernel's choice), not one of ``avoid``."""
    avoid = set(avoid)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
            probe_socket.bind(("127.0.0.1", 0))
            port = int(probe_socket.getsockname()[1])
        if port not in avoid:
            return port


def check_port(name: str, port: int) -> None:
    """Refuse a fixed port someone else holds (testpool never stops a foreign process)."""
    holders = procs.listeners([port])
    if port_is_free(port) and port not in holders:
        return
    holder = holders.get(port, "an unknown process")
    raise PortInUseError(
        f"service {name}: port {port} is already in use (held by {holder}). testpool never "
        'stops a process it did not start: free the port, or set port = "auto"'
    )
