"""Run records: what a live run started, so that nothing outlives it.

While a run lives, ``<state dir>/runs/<run id>.json`` (folder mode 0700) lists its pid and start
time, its tmux socket, the process groups it started (with their leaders' start times), its
ports and its temp folders. A run that ends normally deletes its record. A record whose
testpool process is gone (or a zombie) belongs to a dead run: :func:`clean_run` stops whatever
of it is still alive — after checking that each process is still the one recorded, or carries
the run's id in its environment — and removes its folders and tmux server.

A :class:`RunScope` is one invocation's claim on the machine: it writes the record and starts
the reaper the first time something is about to be created (a collecting pytest, a folder, a
worker), and every file of the run lives in one folder, ``$TMPDIR/testpool-<run id>``, whose
path is recorded *before* it is made. So a SIGKILL at any instant leaves nothing that the
reaper or ``testpool clean`` cannot find.

Called by the CLI pipeline (the scope), the pool and executors (record), the reaper and
``testpool clean`` (and the sweep at the start of every run).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testpool import procs
from testpool.config import state_home
from testpool.fsutil import atomic_write_json
from testpool.isolation import TEMP_PREFIX, remove_dir

# How long a run whose reaper pipe closed may take to become a zombie (its files are closed
# a moment before the kernel marks it dead).
EXIT_SETTLE = 2.0


@dataclass
class ProcessRecord:
    pgid: int
    start: float | None
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"pgid": self.pgid, "start": self.start, "what": self.what}


@dataclass
class RunRecord:
    run_id: str
    pid: int
    pid_start: float | None
    root: str
    started_at: str
    socket: str | None = None
    ports: list[int] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "root": self.root,
            "started_at": self.started_at,
            "socket": self.socket,
            "ports": self.ports,
            "processes": [p.to_dict() for p in self.processes],
            "dirs": self.dirs,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Load a record, checking every field's type: a record decides which processes get
        signalled, so a wrong one is refused (:class:`ValueError` naming the field), never
        guessed at."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        processes = _field(data, "processes", list, [])
        for process in processes:
            if not isinstance(process, dict):
                raise ValueError("'processes' must hold objects")
        return cls(
            run_id=_field(data, "run_id", str),
            pid=_pid(data, "pid"),
            pid_start=_time(data, "pid_start"),
            root=_field(data, "root", str, ""),
            started_at=_field(data, "started_at", str, ""),
            socket=_socket(data.get("socket")),
            ports=[_port(p) for p in _field(data, "ports", list, [])],
            processes=[
                ProcessRecord(_pid(p, "pgid"), _time(p, "start"), _field(p, "what", str, ""))
                for p in processes
            ],
            dirs=[
                d if isinstance(d, str) else _bad("dirs") for d in _field(data, "dirs", list, [])
            ],
        )


_MISSING = object()
_KINDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    bool: "a boolean",
}


def _bad(name: str) -> Any:
    raise ValueError(f"'{name}' has the wrong type")


def _field(data: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    value = data.get(name, default)
    if value is _MISSING:
        raise ValueError(f"'{name}' is missing")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"'{name}' must be {_KINDS[kind]}, got {_KINDS.get(type(value), 'null')}")
    return value


def _pid(data: dict[str, Any], name: str) -> int:
    value = _field(data, name, int)
    if value <= 1:  # 0, -1 and 1 would signal our own group, everything, or init
        raise ValueError(f"'{name}' must be a process id above 1, got {value}")
    return int(value)


def _time(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{name}' must be a number, got {_KINDS.get(type(value), 'null')}")
    return float(value)


def _socket(value: Any) -> str | None:
    if value is None:
        return None
    from testpool.tmux import SOCKET_PREFIX

    if not isinstance(value, str) or not value.startswith(SOCKET_PREFIX) or "/" in value:
        raise ValueError("'socket' must name one of testpool's tmux sockets")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError("'ports' must hold port numbers")
    return value


def new_run_id() -> str:
    """Sortable and unique: ``20261122093012-a1b2c3``."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


def runs_folder() -> Path:
    folder = state_home() / "runs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


class RunJournal:
    """The record of the current run; every change is written at once (atomically)."""

    def __init__(self, run_id: str, root: Path) -> None:
        self.path = runs_folder() / f"{run_id}.json"
        self.record = RunRecord(
            run_id=run_id,
            pid=os.getpid(),
            pid_start=procs.start_time(os.getpid()),
            root=str(root),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.save()

    def save(self) -> None:
        # Atomic but not fsynced: the record matters while processes live, and none survive
        # the machine going down.
        atomic_write_json(self.path, self.record.to_dict(), mode=0o600, durable=False)

    def record_start(self, socket: str, ports: list[int], dirs: list[Path]) -> None:
        self.record.socket = socket
        self.record.ports = ports
        self.record.dirs += [str(d) for d in dirs]
        self.save()

    def add_processes(self, groups: list[tuple[int, str]]) -> None:
        for pgid, what in groups:
            self.record.processes.append(ProcessRecord(pgid, procs.start_time(pgid), what))
        self.save()

    def remove_process(self, pgid: int) -> None:
        self.record.processes = [p for p in self.record.processes if p.pgid != pgid]
        self.save()

    def add_dir(self, path: Path) -> None:
        self.record.dirs.append(str(path))
        self.save()

    def remove_dir(self, path: Path) -> None:
        self.record.dirs = [d for d in self.record.dirs if d != str(path)]
        self.save()

    def close(self) -> None:
        """The run ended and released everything: forget it."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


@dataclass
class CleanReport:
    """What :func:`clean_run` found and removed for one dead run."""

    run_id: str
    processes: int = 0
    tmux_server: bool = False
    dirs: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.processes or self.tmux_server or self.dirs)

    def describe(self) -> str:
        parts = []
        if self.processes:
            parts.append(f"{self.processes} process(es)")
        if self.tmux_server:
            parts.append("its tmux server")
        if self.dirs:
            parts.append(f"{self.dirs} temp folder(s)")
        return f"run {self.run_id}: removed " + (", ".join(parts) if parts else "its record")


def load_records(damaged: list[str] | None = None) -> list[tuple[Path, RunRecord]]:
    """Every readable run record. A damaged one (unreadable, not JSON, a field of the wrong
    type) is skipped and left where it is, with a warning line added to ``damaged``: testpool
    cannot tell what such a record's processes are, so it touches none of them."""
    found: list[tuple[Path, RunRecord]] = []
    for path in sorted(runs_folder().glob("*.json")):
        try:
            found.append((path, RunRecord.from_dict(json.loads(path.read_bytes()))))
        except FileNotFoundError:
            continue  # its run ended meanwhile
        except (OSError, ValueError) as error:
            problem = getattr(error, "strerror", None) or str(error)
            if damaged is not None:
                damaged.append(
                    f"skipped the damaged run record {path} ({problem}); delete it once you "
                    "have checked that nothing of that run is left"
                )
    return found


def is_live(record: RunRecord) -> bool:
    """Is the run's testpool process still the one that wrote the record, and not a zombie?

    A zombie is dead: a parent that reaps late (a CI agent, PID 1 in a container) must not
    keep a killed run's servers alive.
    """
    return procs.is_same_process(record.pid, record.pid_start) and procs.pid_alive(record.pid)


def wait_until_dead(record: RunRecord, timeout: float = EXIT_SETTLE) -> bool:
    """For the reaper: True once the run's process is dead (gone or a zombie), False if it
    is still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_live(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def clean_run(record: RunRecord, path: Path | None = None) -> CleanReport:
    """Stop and remove everything a dead run left behind. Never raises for a missing piece."""
    report = CleanReport(record.run_id)
    # 1. Process groups we recorded, if their leader is still the process we started.
    groups = [p.pgid for p in record.processes if procs.is_same_process(p.pgid, p.start)]
    # 2. Anything else carrying the run's id: a process that left its group, a test process,
    # the tmux client and server and tmux's log pipes (they inherit the server's environment).
    strays = [p for p in procs.processes_of_run(record.run_id) if _pgid(p.pid) not in groups]
    report.processes = len(groups) + len(strays)
    procs.terminate_groups(groups)
    procs.kill_processes(strays)
    # 3. The tmux server, then its socket file.
    if record.socket:
        report.tmux_server = kill_tmux_server(record.socket)
    # 4. Whatever a still-running tmux started while we were at it (a run killed in the middle
    # of starting its workers leaves tmux finishing that job on its own).
    for _ in range(3):
        late = procs.processes_of_run(record.run_id)
        if not late:
            break
        report.processes += len(late)
        procs.kill_processes(late)
        if record.socket:
            kill_tmux_server(record.socket)
    # 5. Folders, only if they are named like ours.
    for folder in map(Path, record.dirs):
        if folder.name.startswith(TEMP_PREFIX) and (folder.exists() or folder.is_symlink()):
            remove_dir(folder)
            report.dirs += 1
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return report


def kill_tmux_server(socket: str) -> bool:
    """Kill a run's tmux server and remove its socket. True if there was anything to remove."""
    from testpool.errors import InfrastructureError
    from testpool.tmux import TmuxServer

    try:
        server = TmuxServer(socket)
    except InfrastructureError:
        return False  # no tmux installed: there cannot be a server
    socket_path = server.socket_path()
    existed = server.is_alive() or (socket_path is not None and socket_path.exists())
    server.kill()
    return existed


def sweep_dead_runs(damaged: list[str] | None = None) -> list[CleanReport]:
    """Clean every run whose testpool process is gone. Live runs are left alone, and so are
    damaged records (see :func:`load_records`)."""
    reports = []
    for path, record in load_records(damaged):
        if not is_live(record):
            reports.append(clean_run(record, path))
    return reports


class RunScope:
    """One invocation's claim on the machine: its run id, record, reaper and folder.

    Nothing is written until something needs it: a fully cached run touches no record. The
    first call to :meth:`journal` writes the record and starts the reaper; :meth:`folder`
    records ``$TMPDIR/testpool-<run id>`` and then makes it (mode 0700). :meth:`close`
    removes the folder and the record and lets the reaper go; whoever created a process
    stops it before that (a scope only guarantees the reaper can find it).

    Used as a context manager by the CLI pipeline around discovery and the run.
    """

    def __init__(self, root: Path, run_id: str | None = None) -> None:
        self.root = root
        self.run_id = run_id or new_run_id()
        self._journal: RunJournal | None = None
        self._reaper_fd: int | None = None
        self._folder: Path | None = None

    @property
    def started(self) -> bool:
        return self._journal is not None

    def journal(self) -> RunJournal:
        if self._journal is None:
            from testpool import reaper

            journal = RunJournal(self.run_id, self.root)
            self._journal = journal
            self._reaper_fd = reaper.spawn(journal.path)
        return self._journal

    def folder(self) -> Path:
        """The run's private folder: DATA_DIRs, log pipes, result files, compiler temp files."""
        if self._folder is None:
            folder = Path(tempfile.gettempdir()) / f"{TEMP_PREFIX}{self.run_id}"
            self.journal().add_dir(folder)  # recorded first: a kill right after still finds it
            folder.mkdir(mode=0o700)
            self._folder = folder
        return self._folder

    def close(self) -> None:
        if self._folder is not None:
            remove_dir(self._folder)
            if self._journal is not None:
                self._journal.remove_dir(self._folder)
            self._folder = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._reaper_fd is not None:
            os.close(self._reaper_fd)
            self._reaper_fd = None

    def __enter__(self) -> RunScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
