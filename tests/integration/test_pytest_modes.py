"""The fast (one pytest per worker) and per-test pytest modes keep the same per-test semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Project

MODES = ["session", "process"]


@pytest.mark.parametrize("mode", MODES)
def test_narrow_fixtures_are_torn_down_after_every_test(
    project: Project, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "teardowns"
    project.write(
        "tests/test_leak.py",
        f"""
        import pytest

        @pytest.fixture(scope="module")
        def bucket():
            items = []
            yield items
            with open({str(log)!r}, "a") as handle:
                handle.write("module\\n")

        class TestInClass:
            @pytest.fixture(scope="class")
            def shelf(self):
                return []

            def test_first(self, shelf, bucket):
                shelf.append(1)
                bucket.append("a")
                assert shelf == [1] and bucket == ["a"]

            def test_second(self, shelf, bucket):
                shelf.append(2)
                bucket.append("b")
                assert shelf == [2], "class fixture leaked from the previous test"
                assert bucket == ["b"], "module fixture leaked from the previous test"

        def test_third(bucket):
            bucket.append("c")
            assert bucket == ["c"], "module fixture leaked from the previous test"
        """,
    )
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 0, result.stdout
    assert log.read_text().splitlines() == ["module"] * 3, "module teardown ran after each test"


@pytest.mark.parametrize("mode", MODES)
def test_a_test_that_kills_pytest_fails_and_the_next_one_runs(project: Project, mode: str) -> None:
    project.write(
        "tests/test_crash.py",
        """
        import os

        def test_a_crashes():
            print("about to crash")
            os._exit(3)

        def test_b_runs_after():
            pass
        """,
    )
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 1
    assert result.statuses == {
        "tests/test_crash.py::test_a_crashes": "failed",
        "tests/test_crash.py::test_b_runs_after": "passed",
    }
    crashed = next(t for t in result.report["tests"] if t["status"] == "failed")  # type: ignore[index]
    assert "status 3" in crashed["message"]
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_output_is_captured_per_test(project: Project, mode: str) -> None:
    project.write(
        "tests/test_out.py",
        """
        import sys

        def test_one():
            print("OUTPUT-OF-ONE")

        def test_two():
            print("OUTPUT-OF-TWO")
            print("ERR-OF-TWO", file=sys.stderr)
            assert False
        """,
    )
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    failed = next(t for t in result.report["tests"] if t["status"] == "failed")  # type: ignore[index]
    log = (project.root / failed["log"]).read_text()
    assert "OUTPUT-OF-TWO" in log and "ERR-OF-TWO" in log
    assert "OUTPUT-OF-ONE" not in log
    summary = result.stdout.split("Failures", 1)[1]
    assert "OUTPUT-OF-TWO" in summary and "OUTPUT-OF-ONE" not in summary


def test_session_mode_runs_each_worker_in_one_pytest(project: Project, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    project.write(
        "tests/test_pid.py",
        "".join(
            f"""
def test_{n}():
    import os
    open({str(pids)!r} + "/{n}", "w").write(os.environ["TESTPOOL_WORKER"] + " " + str(os.getpid()))
"""
            for n in range(6)
        ),
    )
    project.config(workers=2, pytest_mode="session")

    assert project.run().returncode == 0

    seen = [p.read_text().split() for p in pids.iterdir()]
    per_worker: dict[str, set[str]] = {}
    for worker, pid in seen:
        per_worker.setdefault(worker, set()).add(pid)
    assert len(seen) == 6
    assert all(len(found) == 1 for found in per_worker.values()), per_worker


@pytest.mark.parametrize("mode", MODES)
def test_session_fixtures_hooks_and_atexit_finish_in_every_worker(
    project: Project, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "finish.log"
    project.write(
        "tests/conftest.py",
        f"""
        import atexit, os
        import pytest

        def _note(what):
            with open({str(log)!r}, "a") as handle:
                handle.write(what + " " + os.environ.get("TESTPOOL_WORKER", "?") + "\\n")

        @pytest.fixture(scope="session")
        def resource():
            yield "r"
            _note("teardown")

        def pytest_sessionfinish(session):
            if os.environ.get("TESTPOOL_WORKER") is not None and session.testscollected:
                _note("sessionfinish")
                atexit.register(_note, "atexit")
        """,
    )
    project.write(
        "tests/test_uses.py",
        "".join(f"def test_{n}(resource):\n    assert resource == 'r'\n" for n in range(4)),
    )
    project.config(workers=2, pytest_mode=mode)

    result = project.run()
    assert result.returncode == 0

    lines = log.read_text().splitlines()
    tests_on = {w: sum(t["worker"] == w for t in result.report["tests"]) for w in (0, 1)}  # type: ignore[index]
    for worker in (0, 1):
        # session mode: one pytest per worker; process mode: one per test
        expected = 1 if mode == "session" else tests_on[worker]
        for what in ("teardown", "sessionfinish", "atexit"):
            assert lines.count(f"{what} {worker}") == expected, (what, worker, lines)


def test_workers_that_cannot_collect_fail_every_test_once(project: Project) -> None:
    # Discovery succeeds; the workers' pytest (which has TESTPOOL_CMD_FD) cannot collect.
    project.write(
        "tests/conftest.py",
        """
        import os
        if "TESTPOOL_CMD_FD" in os.environ:
            raise RuntimeError("conftest refuses to load in workers")
        """,
    )
    project.write("tests/test_a.py", "".join(f"def test_{n}(): pass\n" for n in range(5)))
    project.config(workers=2, test_timeout=600)

    result = project.run(timeout=120)

    assert result.returncode == 1
    assert set(result.statuses.values()) == {"failed"}
    assert "could not collect the tests for the workers" in result.stdout
    assert "conftest refuses to load in workers" in result.stdout
    project.assert_clean(result.run_id)


def test_a_passing_test_with_huge_output_passes(project: Project) -> None:
    # More than the 64 MiB a verdict line may take, printed in one go and line by line.
    project.write(
        "tests/test_loud.py",
        """
        import sys

        def test_prints_70_mib_at_once():
            sys.stdout.write("x" * (70 * 1024 * 1024) + "\\nthe end\\n")

        def test_prints_70_mib_in_lines():
            line = "y" * 1023 + "\\n"
            for _ in range(70 * 1024):
                sys.stdout.write(line)
            print("the end")
        """,
    )
    project.config(test_timeout=300)

    result = project.run()

    assert result.returncode == 0, result.stdout[-2000:]
    assert set(result.statuses.values()) == {"passed"}
    project.assert_clean(result.run_id)


def test_a_failing_test_with_huge_output_keeps_its_tail(project: Project) -> None:
    project.write(
        "tests/test_loud.py",
        """
        import sys

        def test_prints_then_fails():
            sys.stdout.write("x" * (70 * 1024 * 1024) + "\\nthe last words\\n")
            assert False, "it failed"
        """,
    )
    project.config(test_timeout=300)

    result = project.run()

    assert result.returncode == 1
    assert result.statuses == {"tests/test_loud.py::test_prints_then_fails": "failed"}
    assert "it failed" in result.stdout and "the last words" in result.stdout
    log = next((project.root / "test-results/logs").glob("*/tests/*.log")).read_text()
    assert "[testpool: earlier output truncated]" in log
    assert len(log) < 8 * 1024 * 1024
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", ["session", "process"])
def test_ids_with_line_breaks_get_their_own_verdicts(project: Project, mode: str) -> None:
    project.write(
        "pytest.ini",
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n",
    )
    project.write(
        "tests/test_nl.py",
        """
        import pytest

        @pytest.mark.parametrize("value", ["a\\nb", "c\\r\\nd", "e"], ids=lambda v: v)
        def test_p(value):
            assert value != "e"
        """,
    )
    project.config(pytest_mode=mode)

    result = project.run()

    assert result.statuses == {
        "tests/test_nl.py::test_p[a\nb]": "passed",
        "tests/test_nl.py::test_p[c\r\nd]": "passed",
        "tests/test_nl.py::test_p[e]": "failed",
    }, result.stdout
    project.assert_clean(result.run_id)
