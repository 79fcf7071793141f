"""One report from several: the parts of a suite run on several machines.

``testpool merge-reports DIR…`` reads each part's report (``report.json``, or the
``aborted-run.json`` of a part that stopped before any test started) and makes one run summary
of them, which the usual writers turn into ``junit.xml`` and ``report.json``. Pure apart from
:func:`load_part`: the merged summary is a function of the parts.

A merged report never looks better than the truth: a shard that is missing (its artifact did
not arrive), a part that counted a different suite, or a test reported twice is an error in
the merged report (exit 1), named in one line, rather than a smaller green report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testpool.errors import ConfigError, ExitCode
from testpool.report.files import ABORTED, REPORT
from testpool.results import PhaseResult, RunSummary, TestResult
from testpool.state import new_run_id


@dataclass(frozen=True)
class Part:
    """One part's report and where it came from (a folder, shown in messages)."""

    source: str
    summary: RunSummary

    @property
    def origin(self) -> str:
        part = self.summary.part or {}
        if part.get("kind") == "shard":
            return f"shard {part.get('index')}/{part.get('count')}"
        if part.get("kind") == "queue":
            return str(part.get("machine") or self.source)
        return self.source


def load_part(folder: Path) -> Part:
    """The report a part left in ``folder`` (its ``results_dir``). A part whose last run
    stopped before any test started has an ``aborted-run.json`` newer than its report."""
    if not folder.is_dir():
        raise ConfigError(f"merge-reports: {folder} is not a folder")
    for name in (ABORTED, REPORT):
        path = folder / name
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise ConfigError(f"merge-reports: cannot read {path}: {error.strerror}") from None
        try:
            return Part(str(folder), RunSummary.from_dict(json.loads(text)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"merge-reports: {path} is not a testpool report") from None
    raise ConfigError(f"merge-reports: no {REPORT} in {folder}")


def merge(parts: Sequence[Part]) -> RunSummary:
    """One summary of ``parts``, in the order given (shards sorted by their number)."""
    ordered = sorted(parts, key=_order)
    problems = _coverage_problems(ordered)
    results: list[TestResult] = []
    seen: dict[str, str] = {}
    events: list[str] = []
    for part in ordered:
        for result in part.summary.results:
            if result.id in seen:
                problems.append(
                    f"{result.id} is reported by both {seen[result.id]} and {part.origin}"
                )
                continue
            seen[result.id] = part.origin
            if not result.origin:
                result = _with_origin(result, part.origin)
            results.append(result)
        events += [f"{part.origin}: {event}" for event in part.summary.infra_events]
    suite = _suite_size(ordered)
    if suite is not None and not problems and len(results) != suite:
        problems.append(f"the shards hold {len(results)} test(s), the suite they split {suite}")
    errors = [f"{p.origin}: {p.summary.error}" for p in ordered if p.summary.error]
    error_exit = next((p.summary.error_exit for p in ordered if p.summary.error_exit), 0)
    if problems:
        errors = problems[:1] + errors
        error_exit = error_exit or ExitCode.FAILED
        if len(problems) > 1:
            events += problems[1:]
    starts = [p.summary.started_unix for p in ordered if p.summary.started_unix]
    ends = [p.summary.started_unix + p.summary.wall_time for p in ordered if p.summary.started_unix]
    first = min(ordered, key=lambda p: p.summary.started_at) if ordered else None
    return RunSummary(
        run_id=new_run_id(),
        results=results,
        wall_time=(max(ends) - min(starts)) if starts else 0.0,
        workers=sum(p.summary.workers for p in ordered),
        started_at=first.summary.started_at if first else "",
        started_unix=min(starts) if starts else 0.0,
        interrupted=any(p.summary.interrupted for p in ordered),
        fail_on_flaky=any(p.summary.fail_on_flaky for p in ordered),
        infra_events=events,
        timed_events=[
            {**event, "origin": p.origin} for p in ordered for event in p.summary.timed_events
        ],
        error="; ".join(errors),
        error_detail="\n".join(errors[1:]) if len(errors) > 1 else "",
        error_exit=error_exit,
        phases=merge_phases([p.summary.phases for p in ordered]),
        services=[
            {**service, "origin": p.origin} for p in ordered for service in p.summary.services
        ],
        parts=[
            {
                "origin": p.origin,
                "source": p.source,
                "run_id": p.summary.run_id,
                "exit_code": p.summary.exit_code(),
                "tests": len(p.summary.results),
                "wall_time": round(p.summary.wall_time, 4),
                "started_unix": round(p.summary.started_unix, 4),
                "worker_logs": {str(k): v for k, v in sorted(p.summary.worker_logs.items())},
            }
            for p in ordered
        ],
    )


def merge_phases(parts: Sequence[Sequence[PhaseResult]]) -> list[PhaseResult]:
    """The phases of the whole suite from each part's: in the configuration's order, each
    with the tests of every part. A part without tests in a phase does not list it. The
    parts ran side by side: a phase's wall time is its longest part's. Its outcome is the
    worst: ``failed`` if it failed anywhere; ``not run`` if no part ran it; ``stopped`` if
    a part stopped in it or did not run it (its own required phase failed)."""
    order: list[str] = []
    for phases in parts:
        names = [phase.name for phase in phases]
        for position, name in enumerate(names):
            if name in order:
                continue
            before = next((n for n in reversed(names[:position]) if n in order), None)
            after = next((n for n in names[position + 1 :] if n in order), None)
            if before is not None:
                order.insert(order.index(before) + 1, name)
            elif after is not None:
                order.insert(order.index(after), name)
            else:
                order.append(name)
    merged = []
    for name in order:
        found = [phase for phases in parts for phase in phases if phase.name == name]
        outcomes = {phase.outcome for phase in found}
        if "failed" in outcomes:
            outcome = "failed"
        elif outcomes == {"not run"}:
            outcome = "not run"
        elif outcomes & {"stopped", "not run"}:
            outcome = "stopped"
        else:
            outcome = "passed"
        first = found[0]
        merged.append(
            PhaseResult(
                name, first.mode, first.required, outcome,
                sum(phase.tests for phase in found), max(phase.wall_time for phase in found),
            )
        )  # fmt: skip
    return merged


def _order(part: Part) -> tuple[int, int, str]:
    info = part.summary.part or {}
    if info.get("kind") == "shard":
        return (0, int(info.get("index", 0)), part.source)
    return (1, 0, part.source)


def _coverage_problems(parts: Sequence[Part]) -> list[str]:
    """What shows that the parts are not the whole suite (shards only: they say so)."""
    shards = [p.summary.part for p in parts if (p.summary.part or {}).get("kind") == "shard"]
    if not shards:
        return []
    problems = []
    counts = {int(s.get("count", 0)) for s in shards if s}
    if len(counts) != 1:
        return [f"the parts were split in different ways (--shard I/N with N = {sorted(counts)})"]
    count = counts.pop()
    indices = sorted(int(s.get("index", 0)) for s in shards if s)
    missing = [i for i in range(1, count + 1) if i not in indices]
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing)
        problems.append(f"shard(s) {names} missing: their tests are not in this report")
    doubled = sorted({i for i in indices if indices.count(i) > 1})
    if doubled:
        names = ", ".join(f"{i}/{count}" for i in doubled)
        problems.append(f"shard(s) {names} given more than once")
    suites = {int(s.get("suite", -1)) for s in shards if s}
    if len(suites) > 1:
        problems.append(
            f"the shards split different suites ({', '.join(map(str, sorted(suites)))} tests): "
            "were they run on the same commit and cache?"
        )
    return problems


def _suite_size(parts: Sequence[Part]) -> int | None:
    sizes = {int((p.summary.part or {}).get("suite", -1)) for p in parts}
    if len(sizes) == 1 and all((p.summary.part or {}).get("kind") == "shard" for p in parts):
        size = sizes.pop()
        return size if size >= 0 else None
    return None


def _with_origin(result: TestResult, origin: str) -> TestResult:
    from dataclasses import replace

    return replace(result, origin=origin)
