"""``testpool explain ID``: why a test ran or was cached last time, whether it would run now and
why (which input changed, down to the files), its recent results and how flaky it looks.

Pure: :func:`explain` is a function of the cache entry, the manifests the cache kept for the
entry's digests, the test's digests and manifests now, and the last report's word on it; it
returns the lines to print. The CLI pipeline (``app.explain_test``) gathers those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from testpool.cache import COMPONENTS, REASONS, CacheEntry, PastResult, decide
from testpool.errors import NoTestsError, UsageError
from testpool.results import Status

# Names listed per changed component; the rest are counted.
NAMES_SHOWN = 10
# Components whose manifests name files (the others name config keys or services).
FILE_COMPONENTS = frozenset({"test", "shared", "helpers", "inputs", "seed", "secrets"})


def match(query: str, ids: Sequence[str]) -> str:
    """The one test ``query`` names: an exact id, else the only id containing it (ignoring
    case, as ``--file`` does). Several: :class:`UsageError` listing them (exit 2); none:
    :class:`NoTestsError` (exit 5)."""
    if query in ids:
        return query
    needle = query.casefold()
    found = sorted({test_id for test_id in ids if needle in test_id.casefold()})
    if len(found) == 1:
        return found[0]
    if not found:
        raise NoTestsError(f"no test id contains '{query}' (of {len(ids)} known)")
    listed = "\n".join(found[:50]) + (f"\n… and {len(found) - 50} more" if len(found) > 50 else "")
    raise UsageError(
        f"'{query}' matches {len(found)} tests; give the whole id or a longer part of it",
        detail=listed,
    )


@dataclass(frozen=True)
class Change:
    """One input of a test whose digest differs between its cache entry and now."""

    component: str
    before: str | None  # the digest the entry holds (None: the input is new)
    after: str | None  # the digest now (None: the test no longer has this input)
    modified: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    known: bool = True  # False: the cache kept no manifest of the old digest

    @property
    def reason(self) -> str:
        return REASONS.get(self.component, f"{self.component} changed")


def changes(
    before: Mapping[str, str],
    after: Mapping[str, str],
    old_manifests: Mapping[str, Any],
    new_manifests: Mapping[str, Mapping[str, str]],
) -> list[Change]:
    """Every component whose digest changed, in the order the cache names reasons, with the
    names (files, config keys, services) that changed within it. ``old_manifests`` is the
    cache's: digest -> what it was made of (unchecked JSON); ``new_manifests`` is component ->
    what it is made of now."""
    found = []
    for component in COMPONENTS:
        old, new = before.get(component), after.get(component)
        if old == new:
            continue
        old_names = _manifest(old_manifests.get(old)) if old is not None else {}
        new_names = dict(new_manifests.get(component, {})) if new is not None else {}
        if old_names is None:
            found.append(Change(component, old, new, known=False))
            continue
        found.append(
            Change(
                component,
                old,
                new,
                modified=tuple(
                    sorted(n for n in old_names if n in new_names and old_names[n] != new_names[n])
                ),
                added=tuple(sorted(n for n in new_names if n not in old_names)),
                removed=tuple(sorted(n for n in old_names if n not in new_names)),
            )
        )
    return found


def _manifest(value: Any) -> dict[str, str] | None:
    """A manifest from the cache file, or None if there is none (or it is not one)."""
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Flakiness:
    """What a test's recent results say about it."""

    runs: int  # results with a verdict (skipped ones do not count)
    passed: int  # passed, or flaky (it passed in the end)
    flaky: int  # failed, then passed on a retry within one run
    fail_then_pass: int  # a failing result followed by a passing one in the next run

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.runs if self.runs else None


def flakiness(history: Sequence[PastResult]) -> Flakiness:
    judged = [r for r in history if r.status is not Status.SKIPPED]
    passing = (Status.PASSED, Status.FLAKY)
    return Flakiness(
        runs=len(judged),
        passed=sum(r.status in passing for r in judged),
        flaky=sum(r.status is Status.FLAKY for r in judged),
        fail_then_pass=sum(
            1
            for earlier, later in pairwise(judged)
            if earlier.status.is_failure and later.status in passing
        ),
    )


@dataclass(frozen=True)
class LastReport:
    """What the last run's report.json says of the test."""

    run_id: str
    started_at: str
    status: str
    reason: str = ""  # why it ran (reports written before explain existed have none)
    message: str = ""
    duration: float = 0.0

    @classmethod
    def find(cls, report: Mapping[str, Any], test_id: str) -> LastReport | None:
        """The test in a report.json document, or None (not there, or not a report)."""
        tests = report.get("tests")
        if not isinstance(tests, list):
            return None
        for test in tests:
            if isinstance(test, dict) and test.get("id") == test_id:
                try:
                    return cls(
                        run_id=str(report.get("run_id", "")),
                        started_at=str(report.get("started_at", "")),
                        status=str(test["status"]),
                        reason=str(test.get("reason") or ""),
                        message=str(test.get("message") or ""),
                        duration=float(test.get("duration") or 0.0),
                    )
                except (KeyError, TypeError, ValueError):
                    return None
        return None


@dataclass(frozen=True)
class Subject:
    """Everything known about one test, gathered by the CLI pipeline."""

    test_id: str
    entry: CacheEntry | None
    # Its digests and manifests now; None when the test is no longer discovered.
    inputs: Mapping[str, str] | None
    manifests: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    cache_manifests: Mapping[str, Any] = field(default_factory=dict)
    last_report: LastReport | None = None
    report_path: str = ""


def explain(subject: Subject) -> list[str]:
    """The lines ``testpool explain`` prints (plain text; the caller escapes them)."""
    entry = subject.entry
    lines = [subject.test_id]
    lines += _last_time(subject)
    if subject.inputs is None:
        lines.append(
            "now: would not run: no test of this id is discovered now (removed or renamed? "
            "or the tests folder, the runner's selection or the configuration changed)"
        )
    else:
        run, reason = decide(entry, subject.inputs, full=False)
        lines.append(f"now: {'would run' if run else 'would be cached'}: {reason}")
        if entry is not None:
            found = changes(
                entry.inputs, subject.inputs, subject.cache_manifests, subject.manifests
            )
            if found and reason not in {change.reason for change in found}:
                lines.append("  what changed since it last ran:")
            lines += [f"  {line}" for change in found for line in describe(change)]
            if run and not found:
                lines.append("  nothing it depends on changed since it last ran")
    if entry is None:
        lines.append("history: none (the cache has no entry for this test)")
        return lines
    past = entry.past()
    lines.append(f"history (last {len(past)}, newest first):")
    lines += [f"  {_when(r.ran_at)}  {r.status.value:<8} {r.duration:.2f}s" for r in reversed(past)]
    lines.append("flakiness: " + describe_flakiness(flakiness(past)))
    return lines


def _last_time(subject: Subject) -> list[str]:
    lines = []
    last, entry = subject.last_report, subject.entry
    if last is not None:
        where = f"last run ({last.run_id}, {_when(last.started_at)})"
        if last.status == Status.CACHED.value:
            lines.append(f"{where}: cached: it had passed and nothing it depends on had changed")
        elif last.status == Status.NOT_RUN.value:
            lines.append(f"{where}: not run" + (f": {last.message}" if last.message else ""))
        else:
            why = f" because {last.reason}" if last.reason else ""
            lines.append(f"{where}: ran{why}: {last.status} in {last.duration:.2f}s")
    elif subject.report_path:
        lines.append(f"last run: not in {subject.report_path}")
    if entry is not None:
        why = f" because {entry.reason}" if entry.reason else ""
        lines.append(
            f"last ran {_when(entry.ran_at)}{why}: {entry.status.value} in {entry.duration:.2f}s"
        )
    else:
        lines.append("last ran: never, as far as the cache knows")
    return lines


def describe(change: Change) -> list[str]:
    """``inputs changed (digest 0b9c8d7e → 1f2e3d4c): e2e/app/server.py (modified)``."""
    digests = f"digest {_short(change.before)} → {_short(change.after)}"
    head = f"{change.reason} ({digests})"
    if change.before is None:
        return [f"{head}: it did not have this input before"]
    if change.after is None:
        return [f"{head}: it no longer has this input"]
    if not change.known:
        return [f"{head}: which {_what(change)} is not known (the cache kept no list of them)"]
    named = [
        *(f"{name} (modified)" for name in change.modified),
        *(f"{name} (added)" for name in change.added),
        *(f"{name} (removed)" for name in change.removed),
    ]
    if not named:
        return [f"{head}: the same {_what(change)}, differently combined"]
    shown = ", ".join(named[:NAMES_SHOWN])
    more = f", and {len(named) - NAMES_SHOWN} more" if len(named) > NAMES_SHOWN else ""
    return [f"{head}: {shown}{more}"]


def _what(change: Change) -> str:
    if change.component in FILE_COMPONENTS:
        return "files"
    return "keys" if change.component == "config" else "services"


def describe_flakiness(stats: Flakiness) -> str:
    if stats.pass_rate is None:
        return "no result with a verdict yet"
    return (
        f"{stats.passed} of {stats.runs} run(s) passed ({stats.pass_rate:.0%}); "
        f"{stats.flaky} flaky (failed, then passed on a retry); "
        f"{stats.fail_then_pass} failure(s) followed by a pass in the next run"
    )


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:8]


def _when(timestamp: str) -> str:
    """``2026-11-22T09:14:03.512204Z`` as ``2026-11-22 09:14:03 UTC`` (anything else as is)."""
    if len(timestamp) >= 19 and timestamp[10] == "T":
        zone = " UTC" if timestamp.endswith(("Z", "+00:00")) else ""
        return f"{timestamp[:10]} {timestamp[11:19]}{zone}"
    return timestamp
