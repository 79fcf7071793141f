"""--watch's pure decisions: what changed, what the zygote must do, the suite as it stands."""

from __future__ import annotations

from pathlib import Path

from testpool.hashing import MISSING, FileHasher, is_ignored_name
from testpool.results import RunSummary, Status, TestResult
from testpool.runners.base import TestCase
from testpool.watch import (
    Collection,
    FileChanges,
    collection_for,
    file_changes,
    merge,
    with_deferred,
)

ROOT = Path("/project")
TESTS = ROOT / "tests"


def test_file_changes_tells_changed_added_and_removed() -> None:
    before = {TESTS / "a.py": "1", TESTS / "b.py": "2", TESTS / "c.py": "3", TESTS / "d": MISSING}
    after = {TESTS / "a.py": "1", TESTS / "b.py": "9", TESTS / "c.py": MISSING, TESTS / "e.py": "5"}
    changes = file_changes(before, after)
    assert changes.changed == {TESTS / "b.py"}
    assert changes.removed == {TESTS / "c.py"}
    assert changes.added == {TESTS / "e.py"}
    assert file_changes(before, before) == FileChanges()


def _collection(changes: FileChanges, **kwargs: object) -> Collection:
    options: dict[str, object] = {
        "root": ROOT,
        "dependencies": {
            TESTS / "test_a.py": [TESTS / "conftest.py", TESTS / "helpers.py"],
            TESTS / "test_b.py": [TESTS / "conftest.py"],
            TESTS / "helpers.py": [TESTS / "conftest.py"],
            TESTS / "conftest.py": [TESTS / "fixtures.py"],
        },
        "conftest_dependencies": [TESTS / "fixtures.py"],
    }
    options.update(kwargs)
    return collection_for(changes, **options)  # type: ignore[arg-type]


def test_a_test_module_is_collected_again_alone() -> None:
    collection = _collection(FileChanges(changed=frozenset({TESTS / "test_b.py"})))
    assert collection == Collection(purge=(TESTS / "test_b.py",), modules=(TESTS / "test_b.py",))


def test_a_helper_is_forgotten_with_every_module_that_imports_it() -> None:
    collection = _collection(FileChanges(changed=frozenset({TESTS / "helpers.py"})))
    assert not collection.restart
    assert collection.purge == (TESTS / "helpers.py", TESTS / "test_a.py")


def test_a_new_test_file_is_collected_and_a_removed_one_dropped() -> None:
    added = _collection(FileChanges(added=frozenset({TESTS / "test_new.py"})))
    assert added.modules == (TESTS / "test_new.py",) and not added.restart
    removed = _collection(FileChanges(removed=frozenset({TESTS / "test_b.py"})))
    assert removed.modules == (TESTS / "test_b.py",) and not removed.restart


def test_what_pytest_loads_itself_needs_a_new_zygote() -> None:
    for path in (
        TESTS / "conftest.py",
        TESTS / "sub" / "__init__.py",
        TESTS / "fixtures.py",  # a conftest imports it
        TESTS / "plugin.py",  # nothing imports it: maybe a -p plugin
        ROOT / "pytest.ini",
    ):
        collection = _collection(FileChanges(changed=frozenset({path})))
        assert collection.restart, path
    # The application's Python sources are forgotten; whether that needs a new zygote is
    # known once the zygote says whether it had loaded them.
    application = _collection(FileChanges(), application=[ROOT / "app" / "models.py"])
    assert not application.restart and application.needed
    assert application.application == (ROOT / "app" / "models.py",)
    # A new file nothing imports yet cannot have been loaded: collected in place.
    assert not _collection(FileChanges(added=frozenset({TESTS / "plugin.py"}))).restart
    # Data files need nothing from the zygote.
    assert not _collection(FileChanges(changed=frozenset({TESTS / "data.json"}))).needed


def _result(test_id: str, status: Status) -> TestResult:
    return TestResult(test_id, "tests/test_x.py", status)


def _summary(*results: TestResult) -> RunSummary:
    return RunSummary("run", list(results), 1.0, 1, "now")


def test_merge_keeps_each_tests_latest_result() -> None:
    first = _summary(_result("a", Status.FAILED), _result("b", Status.PASSED))
    merged, latest = merge({}, first, ["a", "b"])
    assert [r.status for r in merged.results] == [Status.FAILED, Status.PASSED]
    # The next pass reran b only: a's failure still stands; c is new; d was removed.
    second = _summary(
        _result("a", Status.CACHED), _result("b", Status.FAILED), _result("c", Status.PASSED)
    )
    merged, latest = merge({**latest, "d": _result("d", Status.PASSED)}, second, ["a", "b", "c"])
    assert {r.id: r.status for r in merged.results} == {
        "a": Status.FAILED,
        "b": Status.FAILED,
        "c": Status.PASSED,
    }
    assert set(latest) == {"a", "b", "c"}
    # A test no pass ran is cached.
    merged, _ = merge({}, _summary(_result("e", Status.CACHED)), ["e"])
    assert merged.results[0].status is Status.CACHED


def test_editors_files_are_never_hashed(tmp_path: Path) -> None:
    for name in (".test_a.py.swp", "test_a.py~", "#test_a.py#", ".#test_a.py", "a.py___jb_tmp___"):
        assert is_ignored_name(name), name
    for name in ("test_a.py", "data.json", "#", "tilde~name.txt.bak"):
        assert not is_ignored_name(name), name
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("x = 1\n")
    before = FileHasher(tmp_path).tree(tmp_path / "tests")
    (tmp_path / "tests" / ".test_a.py.swp").write_text("vim was here")
    (tmp_path / "tests" / "test_a.py~").write_text("x = 0\n")
    assert FileHasher(tmp_path).tree(tmp_path / "tests") == before


def test_the_tests_of_files_still_left_out_stay_in_the_suite_where_they_were() -> None:
    """A re-collection's listing lacks the files the answering pytest never collected (the
    zygote collected only the first pass's files): their tests are kept as known, in their
    files' places; a file gone from the listing and not left out goes."""
    before = [
        TestCase("t/a.py::x", "t/a.py"),
        TestCase("t/b.py::y", "t/b.py"),
        TestCase("t/b.py::z", "t/b.py"),
        TestCase("t/c.py::w", "t/c.py"),
        TestCase("t/gone.py::v", "t/gone.py"),
    ]
    found = [
        TestCase("t/a.py::x", "t/a.py"),
        TestCase("t/c.py::w", "t/c.py"),
        TestCase("t/c.py::new", "t/c.py"),
        TestCase("t/new.py::n", "t/new.py"),
    ]
    suite = with_deferred(found, before, {"t/b.py"})
    assert [case.id for case in suite] == [
        "t/a.py::x", "t/b.py::y", "t/b.py::z", "t/c.py::w", "t/c.py::new", "t/new.py::n",
    ]  # fmt: skip
    assert with_deferred(found, before, {"t/other.py"}) == found
