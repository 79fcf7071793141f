"""Start-up: pytest's zygote collects what runs first, and report.json says where the time went.

Real testpool, real tmux, real dev servers, the real pytest zygote and its forks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import Project, Result

CONFTEST = """
import os
import pytest

@pytest.fixture(scope="session")
def session_token():
    with open({setups!r}, "a") as handle:
        handle.write("setup\\n")
    return "token"

@pytest.fixture
def worker_url():
    return os.environ["TEST_BASE_URL"]
"""


def _phases(report: dict[str, object]) -> dict[str, dict[str, float]]:
    startup = report["startup"]
    assert isinstance(startup, dict)
    return {phase["name"]: phase for phase in startup["phases"]}


def test_a_rerun_of_one_file_does_not_import_the_others(project: Project, tmp_path: Path) -> None:
    """The zygote used to collect the whole tests folder whatever ran: a rerun of one file's
    tests imported (and paid for) every test module. Now it collects the files of the tests to
    run; the conftests and the folders are collected as before."""
    imported = tmp_path / "other-imported"
    setups = tmp_path / "setups"
    project.write("tests/conftest.py", CONFTEST.format(setups=str(setups)))
    project.write(
        "tests/test_wanted.py",
        """
        def test_one(session_token, worker_url):
            assert session_token == "token" and worker_url.startswith("http://127.0.0.1:")

        def test_two(worker_url):
            assert worker_url.startswith("http://127.0.0.1:")
        """,
    )
    project.write(
        "tests/test_other.py",
        f"""
        open({str(imported)!r}, "a").write("imported\\n")

        def test_other():
            pass
        """,
    )
    project.config(workers=2)
    assert project.run().returncode == 0  # collects (discovery) and records
    imported.unlink()

    rerun = project.run("--full", "-f", "test_wanted")

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert set(rerun.statuses.values()) == {"passed"}
    assert not imported.exists(), "the zygote imported a module none of whose tests ran"
    assert rerun.report is not None
    startup = rerun.report["startup"]
    assert startup["discovery"] == "cached"
    assert startup["collection"].startswith("1 file(s) first")
    project.assert_clean(rerun.run_id)

    # The old way, for comparison: the whole suite first.
    project.extra_env["TESTPOOL_EARLY_START"] = "0"
    whole = project.run("--full", "-f", "test_wanted")
    assert whole.returncode == 0
    assert imported.exists()
    assert whole.report is not None
    assert whole.report["startup"]["collection"] == "the whole suite before any test"


def test_a_worker_collects_the_files_the_zygote_left_for_later(
    project: Project, tmp_path: Path
) -> None:
    """One worker: the zygote collects the first test's file only and the worker starts; it
    collects the other file when it is sent its first test from it, as the zygote would have:
    the conftest's fixtures work there, its session fixture is not set up again, and a module
    that reads the worker's variables at import gets the worker's values, as in process mode."""
    setups = tmp_path / "setups"
    project.write("tests/conftest.py", CONFTEST.format(setups=str(setups)))
    project.write(
        "tests/test_first.py",
        """
        import time

        def test_slow_goes_first(session_token, worker_url):
            time.sleep(0.3)
            assert session_token == "token"
        """,
    )
    project.write(
        "tests/sub/test_later.py",
        """
        import os

        AT_IMPORT = os.environ.get("TEST_BASE_URL", "")

        class TestLater:
            def test_fixtures_of_the_conftest(self, session_token, worker_url):
                assert session_token == "token"
                assert worker_url == os.environ["TEST_BASE_URL"]

            def test_read_at_import_is_the_workers(self):
                # Collected with the stand-ins, the read noted, then imported anew with the
                # worker's values (issue 11c), as if the zygote had collected it.
                assert AT_IMPORT == os.environ["TEST_BASE_URL"]
                assert AT_IMPORT.startswith("http://127.0.0.1:")
        """,
    )
    project.config(workers=1)
    assert project.run().returncode == 0  # records the durations: the slow test goes first
    setups.unlink()

    result = project.run("--full")

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"} and len(result.statuses) == 3
    assert setups.read_text().splitlines() == ["setup"], "the session fixture was set up again"
    assert result.report is not None
    assert result.report["startup"]["collection"].startswith("1 file(s) first")
    project.assert_clean(result.run_id)


def _run_with_cores(project: Project, cores: int, *args: str) -> Result:
    """testpool as if the machine had ``cores`` CPUs (this one has 2): with two or more per
    worker, the zygote collects only the first tests' files however many workers there are."""
    code = (
        "import runpy, testpool.autoworkers as a\n"
        f"a.available_cores = lambda *args, **kwargs: {cores}\n"
        "runpy.run_module('testpool', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=project.root, env=project.env(),
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Result(done.returncode, done.stdout, done.stderr, project.report())


def test_workers_collect_a_left_out_module_that_reads_their_variables_at_import(
    project: Project, tmp_path: Path
) -> None:
    """Two workers, each collecting a file the zygote left out, that reads TEST_BASE_URL and
    DATA_DIR at import (a module constant, a class body): each worker collects it with the
    stand-ins, notes the reads and imports it anew with its own values, so its tests pass as
    they do in process mode. Merging issue 15b with 11c: a worker collected such a file with
    the stand-ins only, and its tests saw them."""
    imports = tmp_path / "imports"
    project.write("tests/conftest.py", CONFTEST.format(setups=str(tmp_path / "setups")))
    project.write(
        "tests/test_first.py",
        """
        import time

        def test_slow_one():
            time.sleep(0.4)

        def test_slow_two():
            time.sleep(0.4)
        """,
    )
    project.write(
        "tests/sub/test_reads.py",
        f"""
        import os, time
        import pytest

        BASE = os.environ["TEST_BASE_URL"]
        DATA = os.environ["DATA_DIR"]
        with open({str(imports)!r}, "a") as handle:
            handle.write(BASE + "\\n")

        class TestReads:
            URL = os.environ.get("TEST_BASE_URL")

            @pytest.mark.parametrize("n", range(6))
            def test_sees_its_worker(self, n, worker_url):
                time.sleep(0.1)
                assert BASE == self.URL == worker_url == os.environ["TEST_BASE_URL"]
                assert DATA == os.environ["DATA_DIR"]
                assert "testpool-collection-time" not in BASE + DATA
        """,
    )
    project.config(workers=2)
    assert project.run().returncode == 0  # records the durations: test_first.py's go first
    imports.unlink()

    result = _run_with_cores(project, 8, "--full")

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"} and len(result.statuses) == 8
    assert result.report is not None
    assert result.report["startup"]["collection"].startswith("1 file(s) first")
    workers = {t["worker"] for t in result.report["tests"] if t["id"].startswith("tests/sub/")}
    assert len(workers) == 2, result.report["tests"]
    # Each worker imported it twice: collecting (the stand-in), then anew (its own URL); the
    # zygote never did.
    lines = imports.read_text().splitlines()
    stand_ins = [line for line in lines if "testpool-collection-time" in line]
    assert len(stand_ins) == 2, lines
    assert len(set(lines) - set(stand_ins)) == 2, lines
    project.assert_clean(result.run_id)

    # The same module in process mode (a fresh pytest per test) passes the same way.
    project.config(workers=2, pytest_mode="process")
    process = project.run("--full")
    assert process.returncode == 0, process.stdout + process.stderr
    assert set(process.statuses.values()) == {"passed"} and len(process.statuses) == 8


def test_a_left_out_file_that_fails_to_import_in_the_worker_fails_its_tests_with_the_error(
    project: Project, tmp_path: Path
) -> None:
    """A file the zygote left out that fails when the worker collects it (here: a file it
    reads at import appeared since discovery, which is cached): its tests fail with the
    import error, as in process mode, not as tests the worker's pytest did not collect."""
    flag = tmp_path / "broken"
    project.write("tests/test_first.py", "import time\n\ndef test_slow():\n    time.sleep(0.3)\n")
    project.write(
        "tests/test_imports.py",
        f"""
        import os

        if os.path.exists({str(flag)!r}):
            raise RuntimeError("broken at import")

        def test_one():
            pass
        """,
    )
    project.config(workers=1)
    assert project.run().returncode == 0
    flag.write_text("")

    result = project.run("--full")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.statuses == {
        "tests/test_first.py::test_slow": "passed",
        "tests/test_imports.py::test_one": "failed",
    }
    assert result.report is not None
    failed = next(t for t in result.report["tests"] if t["status"] == "failed")
    assert "RuntimeError: broken at import" in failed["message"], failed
    project.assert_clean(result.run_id)


def test_report_names_the_start_up_phases_in_order(project: Project, tmp_path: Path) -> None:
    project.write("tests/conftest.py", CONFTEST.format(setups=str(tmp_path / "setups")))
    project.write(
        "tests/test_a.py",
        "def test_a(worker_url):\n    assert worker_url\n\n\ndef test_b():\n    pass\n",
    )
    project.config(workers=2)

    first = project.run()
    again = project.run("--full")

    assert first.returncode == 0 and again.returncode == 0
    assert first.report is not None and again.report is not None
    assert first.report["startup"]["discovery"] == "collected"
    assert again.report["startup"]["discovery"] == "cached"
    phases = _phases(again.report)
    for name in (
        "python and testpool imports", "discovery", "plan", "secrets", "tmux launch",
        "worker 0 healthy", "pytest start and collection", "worker 0 ready",
        "first test started",
    ):  # fmt: skip
        assert name in phases, (name, list(phases))
        assert phases[name]["end"] >= phases[name]["start"] >= 0
    assert phases["discovery"]["end"] <= phases["plan"]["start"]
    assert phases["plan"]["end"] <= phases["tmux launch"]["start"]
    # A worker is ready once its server is healthy and its pytest is forked; the first test
    # starts after that.
    ready = phases["worker 0 ready"]["start"]
    assert ready >= phases["worker 0 healthy"]["end"]
    assert ready >= phases["pytest start and collection"]["end"]
    assert phases["first test started"]["start"] >= min(
        phases["worker 0 ready"]["start"], phases["worker 1 ready"]["start"]
    )
    assert phases["first test started"]["start"] < again.report["wall_time"] + 5
