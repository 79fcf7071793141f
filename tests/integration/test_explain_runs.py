"""`testpool explain` after real runs: why a test ran, what changed since (down to the file),
its history and flakiness; and a cache of format 1 carried over, not thrown away."""

from __future__ import annotations

import json
from pathlib import Path

from support import Project

SUITE = """
from helpers_mod import greet


def test_one():
    assert greet() == "hi"
"""


def _explain(project: Project, *args: str) -> list[str]:
    result = project.run("explain", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def _now(lines: list[str]) -> list[str]:
    """The "now:" line and the lines under it."""
    start = next(i for i, line in enumerate(lines) if line.startswith("now: "))
    end = next(i for i, line in enumerate(lines) if line.startswith("history"))
    return lines[start:end]


def test_explain_names_what_changed_and_remembers_runs(project: Project) -> None:
    project.write("tests/test_a.py", SUITE)
    project.write("tests/test_b.py", "def test_two():\n    pass\n")
    project.write("tests/helpers_mod.py", "def greet():\n    return 'hi'\n")
    project.write("app/server_source.py", "VERSION = 1\n")
    project.config(inputs=["app/**"])
    first = project.run()
    assert first.returncode == 0, first.stdout + first.stderr

    lines = _explain(project, "test_one")
    assert lines[0] == "tests/test_a.py::test_one"
    assert lines[1].startswith(f"last run ({first.run_id}, ")
    assert lines[1].endswith(": ran because not in cache: passed in " + lines[1].rsplit(" ", 1)[1])
    assert _now(lines) == ["now: would be cached: unchanged"]

    project.write("app/server_source.py", "VERSION = 2\n")
    project.write("app/new_module.py", "X = 1\n")
    project.write("tests/helpers_mod.py", "def greet():\n    return 'hi'  # edited\n")
    project.config(inputs=["app/**"], env={"EXTRA": "1"})
    now = _now(_explain(project, "test_one"))
    assert now[0] == "now: would run: shared test code changed"
    assert now[1].startswith("  shared test code changed (digest ")
    assert now[1].endswith("): tests/helpers_mod.py (modified)")
    assert now[2].endswith("): app/server_source.py (modified), app/new_module.py (added)")
    assert now[2].startswith("  inputs changed (digest ")
    assert now[3].startswith("  config changed (digest ") and now[3].endswith("): env (modified)")
    assert len(now) == 4
    # test_two's module does not import the helper: its story differs.
    assert _now(_explain(project, "test_two"))[0] == "now: would run: inputs changed"

    second = project.run()
    assert second.returncode == 0
    lines = _explain(project, "TEST_A.PY::TEST_ONE")  # any case
    assert lines[1].startswith(f"last run ({second.run_id}, ")
    assert ": ran because shared test code changed: passed" in lines[1]
    assert "because shared test code changed: passed" in lines[2]
    assert "history (last 2, newest first):" in lines
    assert lines[-1].startswith("flakiness: 2 of 2 run(s) passed (100%)")

    ambiguous = project.run("explain", "::test_")
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.splitlines() == [
        "testpool: error: '::test_' matches 2 tests; give the whole id or a longer part of it",
        "  tests/test_a.py::test_one",
        "  tests/test_b.py::test_two",
    ]
    unknown = project.run("explain", "no_such_test")
    assert unknown.returncode == 5
    assert unknown.stderr == "testpool: error: no test id contains 'no_such_test' (of 2 known)\n"
    project.assert_clean(first.run_id, second.run_id)


FLIP = """
from pathlib import Path

COUNT = Path({count!r})


def test_flips():
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    assert n not in (1, 3, 5), f"attempt {{n}} fails"
"""


def test_explain_counts_flaky_and_fail_then_pass(project: Project, tmp_path: Path) -> None:
    project.write("tests/test_flip.py", FLIP.format(count=str(tmp_path / "count")))
    project.config()
    codes = [
        project.run().returncode,  # 1: fails
        project.run().returncode,  # 2: passes (previously failed)
        project.run("--full").returncode,  # 3: fails
        project.run().returncode,  # 4: passes
        project.run("--full", "--retries", "1").returncode,  # 5 fails, 6 passes: flaky
    ]
    assert codes == [1, 0, 1, 0, 0]

    lines = _explain(project, "test_flips")

    at = lines.index("history (last 5, newest first):")
    assert [line.split()[3] for line in lines[at + 1 : at + 6]] == [
        "flaky",
        "passed",
        "failed",
        "passed",
        "failed",
    ]
    assert lines[at + 6] == (
        "flakiness: 3 of 5 run(s) passed (60%); 1 flaky (failed, then passed on a retry); "
        "2 failure(s) followed by a pass in the next run"
    )
    assert "because --full: flaky in" in lines[2]
    assert _now(lines) == [
        "now: would run: previously flaky",
        "  nothing it depends on changed since it last ran",
    ]
    project.assert_clean()


def test_a_format_1_cache_is_carried_over(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.write("tests/test_b.py", "def test_b():\n    pass\n")
    project.config()
    assert project.run().returncode == 0
    path = project.root / ".test-cache.json"
    document = json.loads(path.read_text())
    assert document["version"] == 2
    # As testpool wrote it before format 2: no reason, history or manifests.
    document["version"] = 1
    del document["manifests"]
    for entry in document["tests"].values():
        del entry["reason"], entry["history"]
    path.write_text(json.dumps(document, indent=1))

    cached = project.run()

    assert cached.returncode == 0
    assert "warning" not in cached.stderr, cached.stderr
    assert set(cached.statuses.values()) == {"cached"}, "format 1 entries still count"
    lines = _explain(project, "test_a")
    assert "history (last 1, newest first):" in lines
    project.write("tests/test_a.py", "def test_a():\n    assert 1\n")
    # The input changed; the old entry kept no list of files, so none is named.
    assert _now(_explain(project, "test_a"))[1].endswith(
        "which files is not known (the cache kept no list of them)"
    )
    rerun = project.run()
    assert rerun.returncode == 0
    rewritten = json.loads(path.read_text())
    assert rewritten["version"] == 2
    assert len(rewritten["tests"]["tests/test_a.py::test_a"]["history"]) == 2
    assert rewritten["tests"]["tests/test_b.py::test_b"]["history"] == [
        f"{document['tests']['tests/test_b.py::test_b']['ran_at']} passed "
        f"{document['tests']['tests/test_b.py::test_b']['duration']}"
    ], "an entry the run did not touch is migrated in place"
    project.assert_clean()
