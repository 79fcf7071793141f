"""The static split (--shard I/N) and the merge of the parts' reports: pure logic."""

from __future__ import annotations

import dataclasses
import random
import xml.etree.ElementTree as ET

import pytest

from testpool.errors import ConfigError
from testpool.report.files import junit_xml
from testpool.report.merge import Part, merge, merge_phases
from testpool.results import PhaseResult, RunSummary, Status, TestResult
from testpool.shard import Shard, assign, parse_shard


def test_parse_shard() -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    assert parse_shard(" 1 / 1 ") == Shard(1, 1)
    for bad in ("0/4", "5/4", "1/0", "a/b", "2", "-1/3", "1/2/3"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_every_test_lands_in_exactly_one_part() -> None:
    tests = [f"t{n}" for n in range(101)]
    durations = {f"t{n}": float(n % 7) for n in range(0, 101, 2)}
    parts = assign(tests, 4, durations, skipped={"t3", "t5"})
    flat = [t for part in parts for t in part]
    assert sorted(flat) == sorted(tests)
    assert len(flat) == len(set(flat))


def test_the_split_is_the_same_whatever_the_input_order() -> None:
    tests = [f"t{n}" for n in range(50)]
    durations = {t: float(i % 5) for i, t in enumerate(tests)}
    shuffled = tests[:]
    random.Random(3).shuffle(shuffled)
    assert assign(tests, 3, durations) == assign(shuffled, 3, dict(reversed(durations.items())))


def test_longest_first_packing_balances_recorded_durations() -> None:
    rng = random.Random(7)
    for count in (2, 3, 4):
        durations = {f"t{n}": rng.uniform(0.1, 10.0) for n in range(60)}
        parts = assign(durations, count, durations)
        loads = [sum(durations[t] for t in part) for part in parts]
        bound = max(sum(durations.values()) / count, max(durations.values()))
        assert max(loads) <= bound * 4 / 3  # the longest-processing-time guarantee
        assert max(loads) - min(loads) <= max(durations.values())


def test_unknown_and_cached_tests_are_spread_by_count() -> None:
    tests = ["new1", "new2", "new3", "new4", "old1", "old2", "c1", "c2"]
    parts = assign(tests, 2, {"old1": 5.0, "old2": 5.0}, skipped={"c1", "c2"})
    assert [sum(t.startswith("new") for t in p) for p in parts] == [2, 2]
    assert [sum(t.startswith("c") for t in p) for p in parts] == [1, 1]
    assert [sum(t.startswith("old") for t in p) for p in parts] == [1, 1]


def test_more_parts_than_tests_leaves_some_parts_empty() -> None:
    assert assign(["a", "b"], 4, {}) == [["a"], ["b"], [], []]


def _part(index: int, count: int, suite: int, *results: tuple[str, Status]) -> Part:
    summary = RunSummary(
        run_id=f"r{index}",
        results=[TestResult(test_id, "f.py", status) for test_id, status in results],
        wall_time=1.0,
        workers=2,
        started_at=f"2026-12-01T10:00:0{index}+00:00",
        started_unix=1000.0 + index,
        part={"kind": "shard", "index": index, "count": count, "suite": suite},
    )
    return Part(f"shard-{index}", summary)


def test_merge_of_all_shards_is_one_report() -> None:
    merged = merge(
        [
            _part(2, 2, 3, ("c", Status.PASSED)),
            _part(1, 2, 3, ("a", Status.PASSED), ("b", Status.FAILED)),
        ]
    )
    assert [r.id for r in merged.results] == ["a", "b", "c"]
    assert [r.origin for r in merged.results] == ["shard 1/2", "shard 1/2", "shard 2/2"]
    assert merged.error == ""
    assert merged.exit_code() == 1  # b failed
    assert merged.workers == 4
    assert [p["origin"] for p in merged.parts] == ["shard 1/2", "shard 2/2"]


def test_a_missing_shard_fails_the_merged_report() -> None:
    merged = merge([_part(1, 3, 3, ("a", Status.PASSED)), _part(3, 3, 3, ("c", Status.PASSED))])
    assert "shard(s) 2/3 missing" in merged.error
    assert merged.exit_code() == 1


def test_a_test_reported_twice_or_a_short_suite_fails_the_merged_report() -> None:
    twice = merge([_part(1, 2, 2, ("a", Status.PASSED)), _part(2, 2, 2, ("a", Status.PASSED))])
    assert "reported by both" in twice.error and twice.exit_code() == 1
    short = merge([_part(1, 2, 5, ("a", Status.PASSED)), _part(2, 2, 5, ("b", Status.PASSED))])
    assert "2 test(s), the suite they split 5" in short.error and short.exit_code() == 1


def test_merged_summary_survives_report_json() -> None:
    merged = merge([_part(1, 1, 1, ("a", Status.PASSED))])
    again = RunSummary.from_dict(merged.to_dict())
    assert again.results[0].origin == "shard 1/1"
    assert again.parts == merged.parts


def _phased_part(index: int, phases: list[PhaseResult], *results: tuple[str, Status, str]) -> Part:
    part = _part(index, 2, 4, *((test_id, status) for test_id, status, _ in results))
    part.summary.results = [
        dataclasses.replace(result, phase=phase)
        for result, (_, _, phase) in zip(part.summary.results, results, strict=True)
    ]
    part.summary.phases = phases
    part.summary.services = [{"name": "db", "port": 41000 + index}]
    return part


def test_merged_phases_hold_every_shards_tests_and_the_worst_outcome() -> None:
    # Shard 1's required smoke phase failed, so its "api" phase did not run; shard 2 has no
    # smoke test at all and ran "api" and "other".
    one = _phased_part(
        1,
        [
            PhaseResult("smoke", "sequential", True, "failed", 1, 2.0),
            PhaseResult("api", "parallel", False, "not run", 1, 0.0),
        ],
        ("s1", Status.FAILED, "smoke"),
        ("a1", Status.NOT_RUN, "api"),
    )
    two = _phased_part(
        2,
        [
            PhaseResult("api", "parallel", False, "passed", 1, 3.0),
            PhaseResult("other", "parallel", False, "passed", 1, 1.0),
        ],
        ("a2", Status.PASSED, "api"),
        ("o2", Status.PASSED, "other"),
    )
    merged = merge([two, one])
    assert [(p.name, p.outcome, p.tests, p.wall_time) for p in merged.phases] == [
        ("smoke", "failed", 1, 2.0),
        ("api", "stopped", 2, 3.0),
        ("other", "passed", 1, 1.0),
    ]
    assert [s["origin"] for s in merged.services] == ["shard 1/2", "shard 2/2"]
    assert merged.exit_code() == 1
    document = ET.fromstring(junit_xml(merged).split("\n", 1)[1])
    suites = [(s.get("name"), s.get("tests")) for s in document.findall("./testsuite")]
    assert suites == [("smoke", "1"), ("api", "2"), ("other", "1")]
    again = RunSummary.from_dict(merged.to_dict())
    assert again.phases == merged.phases


def test_merge_phases_keeps_the_configured_order_from_partial_lists() -> None:
    def phases(*names: str) -> list[PhaseResult]:
        return [PhaseResult(name, "parallel", False, "passed", 1) for name in names]

    order = [p.name for p in merge_phases([phases("a", "c"), phases("b", "c"), phases("c", "d")])]
    assert order == ["a", "b", "c", "d"]
    assert merge_phases([phases(), phases()]) == []
    not_run = PhaseResult("x", "parallel", False, "not run", 1)
    assert merge_phases([[not_run], [not_run]])[0].outcome == "not run"


def test_junit_keeps_tests_of_no_listed_phase() -> None:
    # Parts run with different configurations: a test without a phase still appears.
    merged = merge(
        [
            _phased_part(
                1,
                [PhaseResult("smoke", "parallel", True, "passed", 1)],
                ("s", Status.PASSED, "smoke"),
            ),
            _part(2, 2, 2, ("plain", Status.PASSED)),
        ]
    )
    document = ET.fromstring(junit_xml(merged).split("\n", 1)[1])
    suites = [(s.get("name"), s.get("tests")) for s in document.findall("./testsuite")]
    assert suites == [("smoke", "1"), ("testpool", "1")]
    assert document.get("tests") == "2"
