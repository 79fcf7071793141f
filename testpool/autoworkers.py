"""``workers = "auto"``: the worker count that should finish the run soonest. Pure, apart from
:func:`available_cores`, which reads what the kernel grants this process.

The model (predicted start-up plus test time, for N = 1 … 8 workers)::

    predicted(N) = startup(N) + tests(N)
    startup(N)   = io + cpu * max(1, N / spare)      spare = max(cores - 1, 0.5)
    tests(N)     = how long the scheduler's longest-first hand-out of the recorded
                   durations over N workers takes (never less than the longest test)

- ``cpu`` is the CPU time one server start costs (user + system of the worker's process
  group, from launch until it answers its health check), measured in every run and recorded
  in the cache. All N servers start at once: their CPU is shared by the cores the rest of the
  start-up leaves free. That rest (pytest collecting in its zygote, testpool itself, tmux) keeps
  about one core busy while the servers start, hence ``spare = cores - 1``.
- ``io`` is the part of a start that is not CPU (waiting on a database, on a file): the same
  for any N, recovered from the measured wall time with the same formula.
- The test time assumes the tests themselves mostly wait on their server (end-to-end tests
  do): N workers run them N at a time.

Issue 15 measured, on 2 cores with servers that need ~1 s of CPU each, 4.1 s of wall time
with 1 worker, 6.3 s with 4 and 12.9 s with 8; the gap between 1 and 4 implies about 1 s of
tests. For that the model predicts start-up + tests of 2.1 s, 4.3 s and 8.1 s: with the ~2 s of
that run that no N changes, 4.1 s, 6.3 s and 10.1 s. The same choice (1), and the same order;
8 workers are worse than predicted (oversubscribed cores cost more than their share). With
servers that start in 50 ms it picks 4 to 8 workers.

Without a recorded server start, or without recorded durations, there is nothing to predict
with: the choice is ``min(cores, tests, 4)``, and the reason says so.

Called by the run pipeline (:mod:`testpool.app`) before any worker starts.
"""

from __future__ import annotations

import heapq
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.config import MAX_WORKERS
from testpool.hashing import combine

if TYPE_CHECKING:
    from testpool.config import Config

FALLBACK_CAP = 4  # workers when there is nothing to predict with
# Fewer workers win a near-tie: they cost less memory and CPU for the same wall time.
TIE = 0.03


@dataclass(frozen=True)
class ServerCost:
    """One server start, as the last run measured it (the median of its workers)."""

    cpu: float  # CPU seconds from launch until healthy
    wall: float  # seconds from launch until healthy
    workers: int  # how many servers started at once when it was measured

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": round(self.cpu, 4), "wall": round(self.wall, 4), "workers": self.workers}

    @classmethod
    def from_dict(cls, data: Any) -> ServerCost | None:
        """The recorded cost, or None if the entry is unusable (then it is measured anew)."""
        try:
            cost = cls(float(data["cpu"]), float(data["wall"]), int(data["workers"]))
        except (KeyError, TypeError, ValueError):
            return None
        good = all(math.isfinite(v) and v >= 0 for v in (cost.cpu, cost.wall))
        return cost if good and cost.workers >= 1 else None


@dataclass(frozen=True)
class Choice:
    """How many workers the run uses, and why (printed, and kept in report.json)."""

    workers: int
    reason: str
    auto: bool = False
    predicted: dict[int, float] = field(default_factory=dict)  # N -> seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "auto": self.auto,
            "reason": self.reason,
            "predicted": {str(n): round(s, 3) for n, s in sorted(self.predicted.items())},
        }


def server_key(config: Config) -> str:
    """The cache's ``stats`` key of what a server start costs: it is measured anew whenever
    what starts the server changes (its command, environment, health path, files)."""
    import json

    what = {
        "server": config.server,
        "env": dict(sorted(config.env.items())),
        "health_path": config.health_path,
        "files": dict(sorted(config.files.items())),
    }
    return "server:" + combine([json.dumps(what, sort_keys=True)])


def spare_cores(cores: int) -> float:
    """The cores left for the servers while the rest of the start-up keeps one busy."""
    return max(cores - 1, 0.5)


def startup(workers: int, cpu: float, io: float, cores: int) -> float:
    """Seconds until ``workers`` servers started at once are all healthy."""
    return io + cpu * max(1.0, workers / spare_cores(cores))


def io_part(cost: ServerCost, cores: int) -> float:
    """The part of a measured start that was not CPU (the inverse of :func:`startup`)."""
    return max(0.0, cost.wall - startup(cost.workers, cost.cpu, 0.0, cores))


def makespan(durations: Sequence[float], workers: int) -> float:
    """How long ``workers`` take through ``durations`` handed out longest first, each test to
    the worker that frees up first (what the scheduler does with recorded durations)."""
    loads = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def choose(
    *,
    cores: int,
    durations: Sequence[float | None],
    server: ServerCost | None,
    max_workers: int = MAX_WORKERS,
) -> Choice:
    """The worker count for ``durations`` (one per test to run; None where none is recorded)."""
    tests = len(durations)
    limit = max(1, min(max_workers, tests))
    known = [d for d in durations if d is not None]
    missing = (
        "no server start measured yet"
        if server is None
        else ("no recorded test durations" if not known else "")
    )
    if missing:
        count = max(1, min(cores, tests, FALLBACK_CAP))
        return Choice(
            count,
            f"auto: {count} worker(s), {missing}: min(cores {cores}, tests {tests}, "
            f"{FALLBACK_CAP})",
            auto=True,
        )
    assert server is not None
    typical = statistics.median(known)
    filled = [typical if d is None else d for d in durations]
    io = io_part(server, cores)
    predicted = {
        n: startup(n, server.cpu, io, cores) + makespan(filled, n) for n in range(1, limit + 1)
    }
    best = min(predicted.values())
    count = min(n for n, seconds in predicted.items() if seconds <= best * (1 + TIE))
    shown = ", ".join(
        f"{n}: {predicted[n]:.1f} s" for n in sorted(predicted) if n in (1, 2, 4, 8, count)
    )
    unknown = f", {tests - len(known)} without a recorded duration" if len(known) < tests else ""
    reason = (
        f"auto: {count} worker(s), predicted start-up + tests {predicted[count]:.1f} s "
        f"({shown}) from {cores} core(s), {server.cpu:.2f} s of CPU per server start, "
        f"{tests} test(s) of {sum(filled):.1f} s (longest {max(filled):.1f} s){unknown}"
    )
    return Choice(count, reason, auto=True, predicted=predicted)


def available_cores(
    affinity: Callable[[], int] | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    own_cgroup: Path = Path("/proc/self/cgroup"),
) -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    count = affinity() if affinity is not None else len(os.sched_getaffinity(0))
    quota = cgroup_quota(cgroup_root, own_cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(cgroup_root: Path, own_cgroup: Path) -> float | None:
    """CPUs allowed by the tightest cgroup quota above this process (v2 ``cpu.max`` of its
    group and every parent, or v1 ``cpu.cfs_quota_us``), or None without a quota."""
    quotas: list[float] = []
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, _, path = line.partition("::")
        if hierarchy == "0" and path:  # cgroup v2: "0::/the/group"
            folder = cgroup_root / path.strip().lstrip("/")
            while True:
                quotas += _v2_quota(folder / "cpu.max")
                if folder == cgroup_root or cgroup_root not in folder.parents:
                    break
                folder = folder.parent
    for name in ("cpu", "cpu,cpuacct"):
        quotas += _v1_quota(cgroup_root / name)
    return min(quotas) if quotas else None


def _v2_quota(path: Path) -> list[float]:
    try:
        quota, period = path.read_text().split()[:2]
        return [] if quota == "max" else [int(quota) / int(period)]
    except (OSError, ValueError):
        return []


def _v1_quota(folder: Path) -> list[float]:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return []
    return [quota / period] if quota > 0 and period > 0 else []
