"""Cache keys, decisions and the file format, with plain values and a real file system."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import pytest

from testpool.cache import (
    COMPONENTS,
    HISTORY,
    MANIFEST_LIMIT,
    NOT_IN_CACHE,
    VERSION,
    CacheEntry,
    CacheStore,
    decide,
    parse,
)
from testpool.results import Status

REPO = Path(__file__).resolve().parents[2]
INPUTS = {component: f"{component}-digest" for component in COMPONENTS}


def entry(status: Status = Status.PASSED, **changes: str) -> CacheEntry:
    return CacheEntry(status, 0.5, "2026-11-22T10:00:00.000000Z", {**INPUTS, **changes})


def test_example_file_matches_the_real_format() -> None:
    data, warning = parse((REPO / ".test-cache.json.example").read_text())
    assert warning is None
    assert data.tests and all(isinstance(e, CacheEntry) for e in data.tests.values())
    document = json.loads((REPO / ".test-cache.json.example").read_text())
    assert document["version"] == VERSION
    first = next(iter(data.tests.values()))
    assert set(first.inputs) == set(COMPONENTS)
    # Round trip: what we write is what the example shows, key for key.
    assert json.loads(json.dumps(data.to_dict()))["tests"] == document["tests"]
    assert data.discovery == document["discovery"]
    assert data.stats == document["stats"]


def test_unchanged_passed_test_is_skipped() -> None:
    assert decide(entry(), INPUTS, full=False) == (False, "unchanged")


def test_full_runs_even_unchanged() -> None:
    assert decide(entry(), INPUTS, full=True) == (True, "--full")


def test_unknown_test_runs() -> None:
    assert decide(None, INPUTS, full=False) == (True, NOT_IN_CACHE)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (Status.FAILED, "previously failed"),
        (Status.TIMEOUT, "previously timed out"),
        (Status.ERROR, "previously errored"),
        (Status.FLAKY, "previously flaky"),
        (Status.SKIPPED, "previously skipped"),
    ],
)
def test_anything_but_a_pass_runs_again(status: Status, reason: str) -> None:
    assert decide(entry(status), INPUTS, full=False) == (True, reason)


@pytest.mark.parametrize(
    ("component", "reason"),
    [
        ("test", "test file changed"),
        ("shared", "shared test code changed"),
        ("helpers", "helpers changed"),
        ("inputs", "inputs changed"),
        ("seed", "data seed changed"),
        ("config", "config changed"),
        ("secrets", "secrets changed"),
    ],
)
def test_each_changed_input_names_its_reason(component: str, reason: str) -> None:
    assert decide(entry(Status.PASSED, **{component: "old"}), INPUTS, full=False) == (True, reason)


def test_missing_component_in_an_old_entry_means_run() -> None:
    old = CacheEntry(Status.PASSED, 0.1, "t", {"test": INPUTS["test"]})
    assert decide(old, INPUTS, full=False)[0] is True


@pytest.mark.parametrize(
    "text",
    ["", "{", "[]", '{"version": 99, "tests": {}}', '{"version": 1, "tests": "nope"}'],
)
def test_unusable_cache_is_a_warning_and_empty(text: str) -> None:
    data, warning = parse(text, ".test-cache.json")
    assert not data.tests
    if text.startswith('{"version": 1'):
        assert warning is None  # readable, just no usable entries
    else:
        assert warning is not None and ".test-cache.json" in warning


def test_a_bad_entry_is_dropped_the_rest_kept() -> None:
    document = {
        "version": VERSION,
        "salt": "ab",
        "tests": {"good": entry().to_dict(), "bad": {"status": "weird"}},
    }
    data, warning = parse(json.dumps(document))
    assert warning is None
    assert set(data.tests) == {"good"}


def test_record_merges_and_later_result_wins(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    store.record({"a": entry(), "b": entry()}, salt="aa")
    newer = CacheEntry(Status.FAILED, 1.0, "2026-11-22T11:00:00.000000Z", INPUTS)
    older = CacheEntry(Status.PASSED, 1.0, "2026-11-22T09:00:00.000000Z", INPUTS)
    store.record({"a": newer, "b": older, "c": entry()}, salt="bb")
    data, _ = store.load()
    assert data.salt == "aa", "the file keeps its salt"
    assert data.tests["a"].status is Status.FAILED
    assert data.tests["b"].ran_at == entry().ran_at
    assert set(data.tests) == {"a", "b", "c"}


def test_record_writes_atomically_no_temp_files_left(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    store.record({"a": entry()}, salt="aa")
    # No temp file, and no lock file left in the user's project either.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".test-cache.json"]


def _writer(path: str, prefix: str) -> None:
    store = CacheStore(Path(path))
    for index in range(25):
        store.record({f"{prefix}-{index}": entry()}, salt="aa")


def test_concurrent_writers_keep_every_entry(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), f"w{n}")) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    data, warning = CacheStore(path).load()
    assert warning is None
    assert len(data.tests) == 100


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"name": "other-tool", "entries": []}', "its keys: entries, name"),
        ("[1, 2]", "a JSON array"),
        ('"text"', "a JSON string"),
        ('{"version": "1.0", "tests": {}}', "without testpool's format version"),
    ],
)
def test_a_foreign_cache_file_is_named_for_what_it_is_and_never_overwritten(
    tmp_path: Path, text: str, what: str
) -> None:
    path = tmp_path / ".test-cache.json"
    path.write_text(text)
    store = CacheStore(path)
    _, warning = store.load()
    assert warning is not None and "is not a testpool cache" in warning and what in warning
    assert "None" not in warning
    store.record({"a": entry()}, salt="aa")
    assert store.settle_salt("bb") == "bb", "nothing is written, so any salt will do"
    assert path.read_text() == text, "another tool's file is left as it was"


def test_a_cache_of_another_format_version_says_so_and_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    path.write_text('{"version": 7, "tests": {}}')
    store = CacheStore(path)
    _, warning = store.load()
    assert warning is not None and "another version of testpool (format 7" in warning
    store.record({"a": entry()}, salt="aa")
    assert set(store.load()[0].tests) == {"a"}


def test_a_cache_file_that_is_not_utf8_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    path.write_bytes(b'{"version": 1, "tests": {"\xff\xfe": 1}}')
    store = CacheStore(path)
    data, warning = store.load()
    assert not data.tests
    assert warning is not None and "not UTF-8" in warning
    store.record({"a": entry()}, salt="aa")
    assert set(store.load()[0].tests) == {"a"}, "a corrupt file is rewritten"


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "-Infinity", "-1"])
def test_an_entry_with_a_non_finite_duration_is_dropped(duration: str) -> None:
    good = json.dumps(entry().to_dict())
    bad = good.replace('"duration": 0.5', f'"duration": {duration}')
    assert bad != good
    data, warning = parse(
        f'{{"version": {VERSION}, "salt": "ab", "tests": {{"a": {good}, "b": {bad}}}}}'
    )
    assert warning is None
    assert set(data.tests) == {"a"}
    assert all(math.isfinite(d) for d in data.durations().values())


def test_two_first_runs_settle_on_one_salt(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    first, second = CacheStore(path), CacheStore(path)
    data_1, _ = first.load()
    data_2, _ = second.load()
    assert data_1.salt != data_2.salt, "each made one up"
    salt_1 = first.settle_salt(data_1.salt)
    salt_2 = second.settle_salt(data_2.salt)
    assert salt_1 == salt_2 == data_1.salt
    loaded, _ = CacheStore(path).load()
    assert loaded.salt == salt_1 and loaded.salt_from_file


def test_record_gives_a_file_without_a_salt_the_runs_salt(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    path.write_text(f'{{"version": {VERSION}, "tests": {{}}}}')
    CacheStore(path).record({"a": entry()}, salt="abcd")
    assert CacheStore(path).load()[0].salt == "abcd"


def test_an_unwritable_cache_raises_a_cache_error(tmp_path: Path) -> None:
    from testpool.errors import CacheError

    store = CacheStore(tmp_path / "missing-parent-is-a-file" / ".test-cache.json")
    (tmp_path / "missing-parent-is-a-file").write_text("")
    with pytest.raises(CacheError, match=r"cannot write the cache file \.test-cache\.json"):
        store.record({"a": entry()}, salt="aa")


# --- format 2: history, reasons, manifests --------------------------------------------------


def _at(hour: int) -> str:
    return f"2026-11-22T{hour:02d}:00:00.000000Z"


def test_a_format_1_cache_is_read_and_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / ".test-cache.json"
    old_entry = {k: v for k, v in entry().to_dict().items() if k not in ("history", "reason")}
    path.write_text(json.dumps({"version": 1, "salt": "ab", "tests": {"a": old_entry}}))
    store = CacheStore(path)
    data, warning = store.load()
    assert warning is None, "format 1 is read, not thrown away"
    assert data.tests["a"].status is Status.PASSED and data.salt == "ab"
    assert [r.status for r in data.tests["a"].past()] == [Status.PASSED]
    store.record({"b": entry()}, salt="ab")
    document = json.loads(path.read_text())
    assert document["version"] == VERSION == 2
    assert set(document["tests"]) == {"a", "b"}, "the old entry survives the rewrite"
    assert document["tests"]["a"]["history"] == [f"{entry().ran_at} passed 0.5"]


def test_history_keeps_the_last_ten_results_oldest_first(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    for hour in range(12):
        status = Status.FAILED if hour % 3 == 0 else Status.PASSED
        store.record({"a": CacheEntry(status, float(hour), _at(hour), INPUTS)}, salt="aa")
    past = store.load()[0].tests["a"].past()
    assert len(past) == HISTORY == 10
    assert [r.ran_at for r in past] == [_at(hour) for hour in range(2, 12)]
    assert past[-1].duration == 11.0 and past[1].status is Status.FAILED  # hour 3


def test_a_late_result_goes_into_the_history_but_does_not_win(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    store.record({"a": CacheEntry(Status.PASSED, 1.0, _at(10), INPUTS, reason="new")}, salt="aa")
    store.record({"a": CacheEntry(Status.FAILED, 2.0, _at(9), INPUTS, reason="old")}, salt="aa")
    kept = store.load()[0].tests["a"]
    assert (kept.status, kept.reason) == (Status.PASSED, "new")
    assert [(r.ran_at, r.status) for r in kept.past()] == [
        (_at(9), Status.FAILED),
        (_at(10), Status.PASSED),
    ]


def test_a_damaged_history_item_is_skipped_not_fatal() -> None:
    raw = {
        **entry().to_dict(),
        "history": ["garbage", 7, "t passed NaN", "t weird 1", "t failed 1"],
    }
    data, warning = parse(json.dumps({"version": VERSION, "salt": "ab", "tests": {"a": raw}}))
    assert warning is None
    past = data.tests["a"].past()
    assert [(r.ran_at, r.status) for r in past] == [
        (entry().ran_at, Status.PASSED),
        ("t", Status.FAILED),
    ]


def test_manifests_are_kept_only_while_an_entry_refers_to_them(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    store.manifests = {
        INPUTS["inputs"]: {"app/server.py": "1"},
        "unreferenced": {"x": "2"},
        INPUTS["seed"]: {f"seed/{n}": "3" for n in range(MANIFEST_LIMIT + 1)},  # too big
    }
    store.record({"a": entry()}, salt="aa")
    assert store.load()[0].manifests == {INPUTS["inputs"]: {"app/server.py": "1"}}
    # Once no entry has that digest any more, its manifest goes.
    newer = CacheEntry(Status.PASSED, 0.5, _at(23), {**INPUTS, "inputs": "other"})
    CacheStore(store.path).record({"a": newer}, salt="aa")
    assert store.load()[0].manifests == {}


def test_stats_are_kept_beside_the_manifests_and_replaced_key_by_key(tmp_path: Path) -> None:
    """Merging issue 15b (stats) with 15a (format 2, manifests): a record carries both, one
    without stats keeps the file's, and each stat is one line of the file."""
    store = CacheStore(tmp_path / ".test-cache.json")
    store.manifests = {INPUTS["inputs"]: {"app/server.py": "1"}}
    cost = {"cpu": 0.5, "wall": 0.7, "workers": 2}
    store.record({"a": entry()}, salt="aa", stats={"server:x": cost, "server:y": cost})
    CacheStore(store.path).record({"b": entry()}, salt="aa")
    CacheStore(store.path).record({}, salt="aa", stats={"server:y": {**cost, "cpu": 0.1}})
    data, warning = store.load()
    assert warning is None
    assert data.manifests == {INPUTS["inputs"]: {"app/server.py": "1"}}
    assert data.stats == {"server:x": cost, "server:y": {**cost, "cpu": 0.1}}
    assert set(data.tests) == {"a", "b"}
    lines = store.path.read_text().splitlines()
    assert '  "server:x": {"cpu": 0.5, "wall": 0.7, "workers": 2},' in lines
    assert json.loads(store.path.read_text())["version"] == VERSION


def test_the_file_has_one_line_per_test_and_reads_back(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / ".test-cache.json")
    store.record(
        {"a": entry(), 'b"\n<x>': entry()},
        {"pytest:e2e": {"key": "k", "tests": [["a", "f", [], [], []]]}},
        salt="aa",
    )
    text = store.path.read_text()
    lines = text.splitlines()
    assert sum(line.lstrip().startswith('"a": {"status"') for line in lines) == 1
    assert '    ["a", "f", [], [], []]' in lines
    data, warning = parse(text)
    assert warning is None and set(data.tests) == {"a", 'b"\n<x>'}
    assert data.discovery["pytest:e2e"]["tests"] == [["a", "f", [], [], []]]
