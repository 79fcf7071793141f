"""Results as values: a test's status, one attempt at it, its final result, and a run's summary.

Everything here serializes to plain JSON (``to_dict``) and loads back (``from_dict``); the
reporters, the cache and the benchmark read these and nothing else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from testpool.errors import ExitCode


class Status(StrEnum):
    """The verdict on one test."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"  # infrastructure: the worker's server died under the test
    FLAKY = "flaky"  # failed, then passed on a retry
    SKIPPED = "skipped"  # the test skipped itself
    CACHED = "cached"  # not run: passed before and nothing it depends on changed
    NOT_RUN = "not run"  # never started: interrupted, or --max-failures reached

    @property
    def is_failure(self) -> bool:
        return self in (Status.FAILED, Status.TIMEOUT, Status.ERROR)


# Order of the summary's counts line.
STATUS_ORDER = (
    Status.PASSED,
    Status.FAILED,
    Status.TIMEOUT,
    Status.ERROR,
    Status.FLAKY,
    Status.SKIPPED,
    Status.CACHED,
    Status.NOT_RUN,
)


@dataclass(frozen=True)
class Outcome:
    """What one execution of a test produced. Returned by an executor, consumed by the runner."""

    status: Status
    duration: float
    output: str = ""
    message: str = ""  # one line: why it failed, e.g. "timed out after 300 s"


@dataclass(frozen=True)
class DataDirEntry:
    """One entry of a ``DATA_DIR`` listing: a root-relative path (a folder's ends with ``/``),
    its kind (``file``, ``dir``, ``link``, ``other``, ``unreadable``), its size in bytes (files),
    and a link's target (or why a folder could not be listed)."""

    path: str
    kind: str
    size: int = 0
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "kind": self.kind, "size": self.size}
        if self.target:
            data["target"] = self.target
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataDirEntry:
        return cls(
            str(data["path"]), str(data["kind"]), int(data.get("size", 0)),
            str(data.get("target", "")),
        )  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """What a failed attempt left (see :mod:`testpool.evidence`): its output, its server's log
    written while it ran, its ``DATA_DIR`` right after it. Texts are capped; ``truncated``
    names those that were cut."""

    output: str = ""
    server_log: str = ""
    data_dir: tuple[DataDirEntry, ...] = ()
    data_dir_total: int = 0  # entries found (more than listed when the listing was capped)
    data_dir_note: str = ""  # "DATA_DIR itself is a symlink", ...
    truncated: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "server_log": self.server_log,
            "data_dir": [entry.to_dict() for entry in self.data_dir],
            "data_dir_total": self.data_dir_total,
            "data_dir_note": self.data_dir_note,
            "truncated": list(self.truncated),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            output=str(data.get("output", "")),
            server_log=str(data.get("server_log", "")),
            data_dir=tuple(DataDirEntry.from_dict(e) for e in data.get("data_dir", [])),
            data_dir_total=int(data.get("data_dir_total", 0)),
            data_dir_note=str(data.get("data_dir_note", "")),
            truncated=tuple(str(t) for t in data.get("truncated", [])),
        )


@dataclass(frozen=True)
class Attempt:
    """One try of a test on one worker. ``started``/``finished`` are seconds since the run began."""

    worker: int
    status: Status
    duration: float
    started: float
    finished: float
    message: str = ""
    origin: str = ""  # the machine it ran on, when a run spans machines
    # Byte offsets of the worker's server log (report.json's worker_logs) when the attempt
    # started and ended: the server's output while it ran.
    server_log: tuple[int, int] | None = None
    evidence: Evidence | None = field(default=None, compare=False)  # failed attempts only

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "worker": self.worker,
            "status": self.status.value,
            "duration": round(self.duration, 4),
            "started": round(self.started, 4),
            "finished": round(self.finished, 4),
            "message": self.message,
        }
        if self.origin:
            data["origin"] = self.origin
        if self.server_log is not None:
            data["server_log"] = {"start": self.server_log[0], "end": self.server_log[1]}
        if self.evidence is not None:
            data["evidence"] = self.evidence.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        span = data.get("server_log")
        evidence = data.get("evidence")
        return cls(
            worker=int(data["worker"]),
            status=Status(data["status"]),
            duration=float(data["duration"]),
            started=float(data["started"]),
            finished=float(data["finished"]),
            message=str(data.get("message", "")),
            origin=str(data.get("origin", "")),
            server_log=(int(span["start"]), int(span["end"])) if isinstance(span, dict) else None,
            evidence=Evidence.from_dict(evidence) if isinstance(evidence, dict) else None,
        )


@dataclass(frozen=True)
class TestResult:
    """The final result of one test in a run."""

    __test__ = False  # not a pytest test class

    id: str
    file: str
    status: Status
    duration: float = 0.0
    worker: int | None = None
    attempts: tuple[Attempt, ...] = ()
    log_path: str | None = None
    message: str = ""
    output: str = field(default="", compare=False)  # kept in memory for the summary only
    # Where it ran when a run spans machines ("shard 2/4", "ci-runner-3 (pid 123)"); the
    # worker and attempts' workers are that machine's.
    origin: str = ""
    phase: str | None = None  # None when the configuration has no phases
    # Why the plan ran it ("test file changed", "not in cache"...; "unchanged" when cached).
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "file": self.file,
            "status": self.status.value,
            "duration": round(self.duration, 4),
            "worker": self.worker,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
            "log": self.log_path,
            "message": self.message,
            "phase": self.phase,
            "reason": self.reason,
        }
        if self.origin:
            data["origin"] = self.origin
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        return cls(
            id=str(data["id"]),
            file=str(data.get("file", "")),
            status=Status(data["status"]),
            duration=float(data.get("duration", 0.0)),
            worker=data.get("worker"),
            attempts=tuple(Attempt.from_dict(a) for a in data.get("attempts", [])),
            log_path=data.get("log"),
            message=str(data.get("message", "")),
            origin=str(data.get("origin", "")),
            phase=data.get("phase"),
            reason=str(data.get("reason") or ""),
        )


def cached_result(test_id: str, file: str, phase: str | None = None) -> TestResult:
    """The result of a test the cache skipped."""
    return TestResult(test_id, file, Status.CACHED, message="unchanged", phase=phase)


@dataclass(frozen=True)
class PhaseResult:
    """How one phase of a run went. ``outcome``: ``passed``, ``failed`` (a test of it failed),
    or ``not run`` (an earlier required phase failed, the run was stopped, or it was
    interrupted before the phase began)."""

    name: str
    mode: str
    required: bool
    outcome: str
    tests: int
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "required": self.required,
            "outcome": self.outcome,
            "tests": self.tests,
            "wall_time": round(self.wall_time, 4),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseResult:
        return cls(
            name=str(data["name"]),
            mode=str(data["mode"]),
            required=bool(data["required"]),
            outcome=str(data["outcome"]),
            tests=int(data["tests"]),
            wall_time=float(data.get("wall_time", 0.0)),
        )


@dataclass
class RunSummary:
    """All results of a run plus what the run was. Built by the runner, read by the reporters."""

    run_id: str
    results: list[TestResult]
    wall_time: float
    workers: int  # workers actually started (0 when everything was cached)
    started_at: str
    interrupted: bool = False
    fail_on_flaky: bool = False
    started_unix: float = 0.0  # time.time() when the run began (attempt times are relative to it)
    infra_events: list[str] = field(default_factory=list)
    # The infrastructure events with their time (seconds since the run began) and where:
    # {"at": 12.3, "worker": 1, "text": ...} or {"at": ..., "service": "db", "text": ...}
    # (and "origin" in a merged report). The report's timeline shows them.
    timed_events: list[dict[str, Any]] = field(default_factory=list)
    worker_logs: dict[int, str] = field(default_factory=dict)
    # Per worker: port, healthy (seconds from launch until its server answered), cpu (CPU
    # seconds its server took to get there), ready (seconds from the start of the run until it
    # could take a test), restarts.
    workers_detail: list[dict[str, Any]] = field(default_factory=list)
    # The configured phases in order (empty without phases), and the run's shared services:
    # name, port, url, state, ready (seconds to become ready), restarts, log.
    phases: list[PhaseResult] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    # A run-stopping problem (a worker or service that would not start, every worker retired).
    error: str = ""
    error_detail: str = ""
    error_exit: int = 0
    # This run as one part of a bigger one: {"kind": "shard", "index": 2, "count": 4,
    # "suite": 120} or {"kind": "queue", "build": ..., "machine": ...}. None for a whole run.
    part: dict[str, Any] | None = None
    # A merged report: one entry per part it was merged from (origin, run id, exit code...).
    parts: list[dict[str, Any]] = field(default_factory=list)
    # Where the start-up time went (testpool.startup.Timeline.to_dict), and how the worker
    # count was chosen (testpool.autoworkers.Choice.to_dict); None when not known.
    startup: dict[str, Any] | None = None
    workers_choice: dict[str, Any] | None = None

    def counts(self) -> Counter[Status]:
        return Counter(result.status for result in self.results)

    @property
    def ran_nothing(self) -> bool:
        """Tests were to run, but the run stopped before any started (a worker port taken, a
        server that would not start, Ctrl-C during start-up): there is no test result."""
        to_run = [r for r in self.results if r.status is not Status.CACHED]
        return bool(to_run) and all(r.status is Status.NOT_RUN and not r.attempts for r in to_run)

    @property
    def failures(self) -> list[TestResult]:
        bad = [r for r in self.results if r.status.is_failure]
        if self.fail_on_flaky:
            bad += [r for r in self.results if r.status is Status.FLAKY]
        return bad

    def exit_code(self) -> int:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.error:
            return self.error_exit or ExitCode.FAILED
        return ExitCode.FAILED if self.failures else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "started_unix": round(self.started_unix, 4),
            "wall_time": round(self.wall_time, 4),
            "workers": self.workers,
            "interrupted": self.interrupted,
            "fail_on_flaky": self.fail_on_flaky,
            "error": self.error,
            "error_detail": self.error_detail,
            "error_exit": self.error_exit,
            "exit_code": self.exit_code(),
            "counts": {status.value: counts.get(status, 0) for status in STATUS_ORDER},
            "infra_events": list(self.infra_events),
            "timed_events": list(self.timed_events),
            "worker_logs": {str(k): v for k, v in sorted(self.worker_logs.items())},
            "workers_detail": self.workers_detail,
            **({"part": self.part} if self.part else {}),
            **({"parts": self.parts} if self.parts else {}),
            **({"workers_choice": self.workers_choice} if self.workers_choice else {}),
            **({"startup": self.startup} if self.startup else {}),
            "phases": [phase.to_dict() for phase in self.phases],
            "services": self.services,
            "tests": [result.to_dict() for result in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(
            run_id=str(data["run_id"]),
            results=[TestResult.from_dict(t) for t in data["tests"]],
            wall_time=float(data["wall_time"]),
            workers=int(data["workers"]),
            started_at=str(data["started_at"]),
            started_unix=float(data.get("started_unix", 0.0)),
            interrupted=bool(data.get("interrupted", False)),
            fail_on_flaky=bool(data.get("fail_on_flaky", False)),
            error=str(data.get("error", "")),
            error_detail=str(data.get("error_detail", "")),
            error_exit=int(data.get("error_exit", 0)),
            infra_events=list(data.get("infra_events", [])),
            timed_events=[e for e in data.get("timed_events", []) if isinstance(e, dict)],
            worker_logs={int(k): v for k, v in data.get("worker_logs", {}).items()},
            workers_detail=list(data.get("workers_detail", [])),
            part=dict(data["part"]) if isinstance(data.get("part"), dict) else None,
            parts=[dict(p) for p in data.get("parts", []) if isinstance(p, dict)],
            phases=[PhaseResult.from_dict(p) for p in data.get("phases", [])],
            services=list(data.get("services", [])),
            startup=dict(data["startup"]) if isinstance(data.get("startup"), dict) else None,
            workers_choice=dict(data["workers_choice"])
            if isinstance(data.get("workers_choice"), dict)
            else None,
        )
