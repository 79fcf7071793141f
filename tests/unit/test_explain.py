"""`testpool explain`'s reasoning, with plain values: matching an id, naming what changed down
to the files, history and flakiness, and the lines it prints."""

from __future__ import annotations

import pytest

from testpool.cache import COMPONENTS, CacheEntry, PastResult
from testpool.errors import ExitCode, NoTestsError, UsageError
from testpool.explain import (
    Change,
    LastReport,
    Subject,
    changes,
    describe,
    explain,
    flakiness,
    match,
)
from testpool.results import Status

INPUTS = {component: f"{component}-digest" for component in COMPONENTS if component != "services"}
IDS = [
    "e2e/test_stats.py::TestStats::test_increment_by",
    "e2e/test_stats.py::TestStats::test_increment_is_exactly_plus_one",
    "e2e/test_auth.py::test_login",
]


def _at(day: int) -> str:
    return f"2026-11-{day:02d}T09:00:00.000000Z"


def entry(status: Status = Status.PASSED, history: tuple[str, ...] = ()) -> CacheEntry:
    return CacheEntry(status, 0.25, _at(22), INPUTS, reason="test file changed", history=history)


# --- which test ----------------------------------------------------------------------------


def test_an_exact_id_wins_over_longer_ids_containing_it() -> None:
    ids = ["a/test_x.py::test_a", "a/test_x.py::test_a[1]"]
    assert match("a/test_x.py::test_a", ids) == "a/test_x.py::test_a"


def test_a_unique_part_of_an_id_ignoring_case() -> None:
    assert match("LOGIN", IDS) == "e2e/test_auth.py::test_login"


def test_several_matches_are_listed_with_exit_2() -> None:
    with pytest.raises(UsageError) as raised:
        match("increment", IDS)
    assert raised.value.exit_code == ExitCode.USAGE == 2
    assert "matches 2 tests" in raised.value.message
    assert raised.value.detail.splitlines() == IDS[:2]


def test_no_match_is_exit_5() -> None:
    with pytest.raises(NoTestsError) as raised:
        match("nothing", IDS)
    assert raised.value.exit_code == ExitCode.NO_TESTS == 5


# --- what changed ----------------------------------------------------------------------------


def test_changed_files_are_named_modified_added_and_removed() -> None:
    now = {**INPUTS, "inputs": "inputs-new"}
    old_manifests = {"inputs-digest": {"app/a.py": "1", "app/b.py": "2", "app/gone.py": "3"}}
    new_manifests = {"inputs": {"app/a.py": "1", "app/b.py": "9", "app/new.py": "4"}}
    [change] = changes(INPUTS, now, old_manifests, new_manifests)
    assert change == Change(
        "inputs",
        "inputs-digest",
        "inputs-new",
        modified=("app/b.py",),
        added=("app/new.py",),
        removed=("app/gone.py",),
    )
    assert describe(change) == [
        "inputs changed (digest inputs-d → inputs-n): app/b.py (modified), app/new.py (added), "
        "app/gone.py (removed)"
    ]


def test_components_come_in_the_caches_order_of_reasons() -> None:
    now = {**INPUTS, "secrets": "s2", "test": "t2", "config": "c2"}
    found = changes(INPUTS, now, {}, {})
    assert [c.component for c in found] == ["test", "config", "secrets"]
    assert all(not c.known for c in found), "no manifest kept: the files are not known"
    assert "which files is not known" in describe(found[0])[0]
    assert "which keys is not known" in describe(found[1])[0]


def test_a_config_change_names_the_key() -> None:
    now = {**INPUTS, "config": "config-new"}
    old = {"config-digest": {"server": "a", "env": "b"}}
    [change] = changes(INPUTS, now, old, {"config": {"server": "a", "env": "c"}})
    assert describe(change)[0].endswith(": env (modified)")


def test_a_test_that_now_uses_a_service() -> None:
    now = {**INPUTS, "services": "svc"}
    [change] = changes(INPUTS, now, {}, {"services": {"requires": "r", "db": "d"}})
    assert change.before is None
    assert describe(change) == [
        "services changed (digest none → svc): it did not have this input before"
    ]


def test_a_long_list_of_files_is_cut_with_a_count() -> None:
    old = {"inputs-digest": {f"f{n:02d}": "1" for n in range(15)}}
    new = {"inputs": {f"f{n:02d}": "2" for n in range(15)}}
    [change] = changes(INPUTS, {**INPUTS, "inputs": "x"}, old, new)
    assert describe(change)[0].endswith("f09 (modified), and 5 more")


def test_a_manifest_that_is_not_an_object_counts_as_unknown() -> None:
    [change] = changes(INPUTS, {**INPUTS, "seed": "x"}, {"seed-digest": ["not", "a", "dict"]}, {})
    assert not change.known


# --- history and flakiness -------------------------------------------------------------------


def test_flakiness_counts_fail_then_pass_flaky_and_the_pass_rate() -> None:
    statuses = ["passed", "failed", "passed", "timeout", "flaky", "skipped", "error", "error"]
    history = [PastResult(_at(day), Status(s), 1.0) for day, s in enumerate(statuses, start=1)]
    stats = flakiness(history)
    assert stats.runs == 7, "skipped has no verdict"
    assert stats.passed == 3 and stats.flaky == 1
    assert stats.fail_then_pass == 2  # failed->passed, timeout->flaky; not error->error
    assert stats.pass_rate == pytest.approx(3 / 7)


def test_explain_a_cached_test() -> None:
    history = (f"{_at(20)} failed 0.5", f"{_at(21)} flaky 0.4")
    subject = Subject(
        test_id=IDS[0],
        entry=entry(history=history),
        inputs=INPUTS,
        last_report=LastReport("run-1", "2026-11-23T08:00:00+00:00", "cached"),
    )
    lines = explain(subject)
    assert lines[0] == IDS[0]
    assert lines[1] == (
        "last run (run-1, 2026-11-23 08:00:00 UTC): cached: it had passed and nothing it "
        "depends on had changed"
    )
    assert lines[2] == "last ran 2026-11-22 09:00:00 UTC because test file changed: passed in 0.25s"
    assert "now: would be cached: unchanged" in lines
    at = lines.index("history (last 3, newest first):")
    assert lines[at + 1 : at + 4] == [
        "  2026-11-22 09:00:00 UTC  passed   0.25s",
        "  2026-11-21 09:00:00 UTC  flaky    0.40s",
        "  2026-11-20 09:00:00 UTC  failed   0.50s",
    ]
    assert lines[-1] == (
        "flakiness: 2 of 3 run(s) passed (67%); 1 flaky (failed, then passed on a retry); "
        "1 failure(s) followed by a pass in the next run"
    )


def test_explain_a_test_that_would_run_names_the_file() -> None:
    now = {**INPUTS, "test": "test-new"}
    subject = Subject(
        test_id=IDS[0],
        entry=entry(),
        inputs=now,
        manifests={"test": {"e2e/test_stats.py": "2"}},
        cache_manifests={"test-digest": {"e2e/test_stats.py": "1"}},
        last_report=LastReport("run-2", "x", "passed", reason="not in cache", duration=0.3),
    )
    lines = explain(subject)
    assert "last run (run-2, x): ran because not in cache: passed in 0.30s" in lines
    at = lines.index("now: would run: test file changed")
    assert lines[at + 1] == (
        "  test file changed (digest test-dig → test-new): e2e/test_stats.py (modified)"
    )


def test_a_failed_test_runs_again_and_says_what_changed_anyway() -> None:
    now = {**INPUTS, "helpers": "h2"}
    lines = explain(Subject(IDS[0], entry(Status.FAILED), now))
    at = lines.index("now: would run: previously failed")
    assert lines[at + 1] == "  what changed since it last ran:"
    assert lines[at + 2].startswith("  helpers changed (digest helpers- → h2)")


def test_a_failed_test_with_nothing_changed() -> None:
    lines = explain(Subject(IDS[0], entry(Status.FAILED), INPUTS))
    at = lines.index("now: would run: previously failed")
    assert lines[at + 1] == "  nothing it depends on changed since it last ran"


def test_a_test_the_cache_does_not_know() -> None:
    lines = explain(Subject(IDS[0], None, INPUTS, report_path="test-results/report.json"))
    assert lines[1:] == [
        "last run: not in test-results/report.json",
        "last ran: never, as far as the cache knows",
        "now: would run: not in cache",
        "history: none (the cache has no entry for this test)",
    ]


def test_a_test_no_longer_discovered() -> None:
    lines = explain(Subject(IDS[0], entry(), None))
    assert any(
        line.startswith("now: would not run: no test of this id is discovered") for line in lines
    )


def test_last_report_is_read_from_a_report_document() -> None:
    report = {
        "run_id": "r",
        "started_at": "s",
        "tests": [
            "junk",
            {"id": "other", "status": "passed"},
            {"id": IDS[0], "status": "failed", "reason": "inputs changed", "duration": 1.5},
        ],
    }
    assert LastReport.find(report, IDS[0]) == LastReport(
        "r", "s", "failed", reason="inputs changed", duration=1.5
    )
    assert LastReport.find(report, "missing") is None
    assert LastReport.find({"tests": "nope"}, IDS[0]) is None
    assert LastReport.find({"tests": [{"id": IDS[0]}]}, IDS[0]) is None, "no status: not a report"
