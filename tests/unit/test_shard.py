"""The static split (--shard I/N) and the merge of the parts' reports: pure logic."""

from __future__ import annotations

import random

import pytest

from testpool.errors import ConfigError
from testpool.report.merge import Part, merge
from testpool.results import RunSummary, Status, TestResult
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
