"""testpool runs small throwaway suites for real: verdicts, timeouts, retries, filters, reports."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET

import pytest
from support import Project

MODES = ["session", "process"]

PASSING = """
import os
import httpx

def test_env_reaches_the_test():
    base = os.environ["TEST_BASE_URL"]
    served = httpx.get(base + "/env").json()
    assert served["DATA_DIR"] == os.environ["DATA_DIR"]
    assert served["API_TOKEN"] == os.environ["API_TOKEN"]
    assert served["TESTPOOL_WORKER"] == os.environ["TESTPOOL_WORKER"]
    assert base.endswith(served["PORT"])

def test_prints():
    print("hello from the test")
"""


def flaky_suite(marker: str) -> str:
    """A test that fails on its first attempt only, and a test that always passes."""
    return f"""
from pathlib import Path
MARK = Path({marker!r})

def test_flaky():
    if not MARK.exists():
        MARK.write_text("failed once")
        raise AssertionError("first attempt fails")

def test_other():
    pass
"""


FAILING = """
def test_fails():
    print("the reason is printed here")
    assert 6 * 7 == 41, "arithmetic is broken"
"""


@pytest.mark.parametrize("mode", MODES)
def test_failing_test_exits_1_with_its_output_in_the_summary(project: Project, mode: str) -> None:
    project.write("tests/test_ok.py", PASSING)
    project.write("tests/test_bad.py", FAILING)
    project.config(workers=2, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 1, result.stderr
    assert result.statuses == {
        "tests/test_ok.py::test_env_reaches_the_test": "passed",
        "tests/test_ok.py::test_prints": "passed",
        "tests/test_bad.py::test_fails": "failed",
    }
    failures = result.stdout.split("Failures", 1)[1]
    assert "tests/test_bad.py::test_fails" in failures
    assert "the reason is printed here" in failures
    assert "arithmetic is broken" in failures
    assert f"test log:   test-results/logs/{result.run_id}/tests/" in failures
    assert "1 failed" in result.stdout and "2 passed" in result.stdout
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_hanging_test_is_killed_at_the_timeout(project: Project, mode: str) -> None:
    project.write(
        "tests/test_hang.py",
        """
        import subprocess, sys, time
        def test_hangs():
            # A child in the test's process group must die with it.
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            time.sleep(600)

        def test_quick():
            pass
        """,
    )
    project.config(workers=1, pytest_mode=mode, test_timeout=2)

    result = project.run()

    assert result.returncode == 1
    assert result.statuses["tests/test_hang.py::test_hangs"] == "timeout"
    assert result.statuses["tests/test_hang.py::test_quick"] == "passed"
    assert "timed out after 2 s" in result.stdout
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_flaky_test_is_reported_flaky_with_a_retry(project: Project, mode: str) -> None:
    project.write("tests/test_flaky.py", flaky_suite(str(project.tmp / "flaky-once")))
    project.config(workers=2, pytest_mode=mode)

    result = project.run("--retries", "1")

    assert result.returncode == 0, result.stdout
    assert result.statuses == {
        "tests/test_flaky.py::test_flaky": "flaky",
        "tests/test_flaky.py::test_other": "passed",
    }
    attempts = result.report["tests"][0]["attempts"]  # type: ignore[index]
    assert [a["status"] for a in attempts] == ["failed", "passed"]
    assert attempts[0]["worker"] != attempts[1]["worker"], "the retry runs on another worker"
    assert "Flaky" in result.stdout
    project.assert_clean(result.run_id)


def test_fail_on_flaky_turns_flaky_into_exit_1(project: Project) -> None:
    project.write("tests/test_flaky.py", flaky_suite(str(project.tmp / "flaky-once")))
    project.config()
    result = project.run("--retries", "1", "--fail-on-flaky")
    assert result.returncode == 1
    assert result.statuses["tests/test_flaky.py::test_flaky"] == "flaky"


def test_file_filter_selects_exactly_the_matching_tests(project: Project) -> None:
    project.write(
        "tests/test_api.py",
        """
        class TestApiScrape:
            def test_title(self): pass
            def test_links(self): pass

        class TestApiSites:
            def test_list(self): pass
        """,
    )
    project.write("tests/test_other.py", "def test_scrape_like_name(): pass\n")
    project.config(workers=2)

    result = project.run("--file", "testapiscrape")

    assert result.returncode == 0
    assert result.statuses == {
        "tests/test_api.py::TestApiScrape::test_title": "passed",
        "tests/test_api.py::TestApiScrape::test_links": "passed",
    }
    by_file = project.run("-f", "TEST_OTHER")
    assert by_file.statuses == {"tests/test_other.py::test_scrape_like_name": "passed"}


def test_filter_that_matches_nothing_exits_5(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config()

    result = project.run("--file", "nomatch")

    assert result.returncode == 5
    assert result.stderr.strip().splitlines() == [
        "testpool: error: no test id contains 'nomatch' (of 1 discovered)"
    ]
    project.assert_clean()


def test_no_tests_at_all_exits_5(project: Project) -> None:
    project.write("tests/test_empty.py", "# nothing here\n")
    project.config()
    result = project.run()
    assert result.returncode == 5
    assert "no tests" in result.stderr


def test_skipped_test_is_skipped_and_not_a_failure(project: Project) -> None:
    project.write(
        "tests/test_skip.py",
        """
        import pytest
        def test_skips():
            pytest.skip("not on this machine")
        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False
        """,
    )
    project.config()
    result = project.run()
    assert result.returncode == 0
    assert result.statuses == {
        "tests/test_skip.py::test_skips": "skipped",
        "tests/test_skip.py::test_xfail": "passed",
    }


def test_junit_and_report_agree_with_the_console(project: Project) -> None:
    project.write("tests/test_ok.py", PASSING)
    project.write("tests/test_bad.py", FAILING)
    project.write("tests/test_skip.py", "import pytest\ndef test_s(): pytest.skip('x')\n")
    project.config(workers=2)

    result = project.run()

    report = result.report
    assert report is not None
    assert report["counts"]["passed"] == 2
    assert report["counts"]["failed"] == 1
    assert report["counts"]["skipped"] == 1
    assert "2 passed, 1 failed, 1 skipped" in result.stdout
    tree = ET.parse(project.root / "test-results" / "junit.xml")
    suite = tree.getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(report["tests"]) == 4
    assert suite.get("failures") == "1" and suite.get("skipped") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [
        ("tests.test_bad", "test_fails")
    ]
    assert "arithmetic is broken" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]
    for case in cases:
        assert case.get("file", "").startswith("tests/")
        assert float(case.get("time", "-1")) >= 0
    for test in report["tests"]:
        assert test["worker"] in (0, 1)
        assert (project.root / test["log"]).is_file()


def test_max_failures_stops_scheduling(project: Project) -> None:
    project.write(
        "tests/test_many.py",
        "\n".join(f"def test_{i}():\n    assert False\n" for i in range(6)),
    )
    project.config(workers=1)

    result = project.run("-x")

    assert result.returncode == 1
    statuses = list(result.statuses.values())
    assert statuses.count("failed") == 1
    assert statuses.count("not run") == 5
    project.assert_clean(result.run_id)


def test_isolation_test_reseeds_data_dir_before_every_test(project: Project) -> None:
    project.write("seed/counter", "0")
    bump = """
    import os, httpx
    def test_bump_{n}():
        assert httpx.post(os.environ["TEST_BASE_URL"] + "/bump").json()["value"] == 1
    """
    project.write("tests/test_bump.py", "".join(bump.format(n=n) for n in range(4)))

    project.config(workers=1, isolation="test", data_seed="seed")
    assert project.run().returncode == 0

    project.config(workers=1, isolation="worker", data_seed="seed")
    shared = project.run("--full")
    assert shared.returncode == 1, "with one DATA_DIR per worker the counter keeps counting"


def test_command_runner(project: Project) -> None:
    project.write(
        "checks.sh",
        """
        case "$1" in
          list) printf 'checks.sh::ok\\nchecks.sh::bad\\nchecks.sh::skip\\n' ;;
          checks.sh::ok) curl -sf "$TEST_BASE_URL/health" >/dev/null || python3 -c "import urllib.request,os; urllib.request.urlopen(os.environ['TEST_BASE_URL']+'/health')" ;;
          checks.sh::bad) echo "bad output"; exit 1 ;;
          checks.sh::skip) exit 77 ;;
        esac
        """,
    )
    project.config(
        runner="command", tests=".", discover="sh checks.sh list", run="sh checks.sh {id}"
    )

    result = project.run()

    assert result.returncode == 1
    assert result.statuses == {
        "checks.sh::ok": "passed",
        "checks.sh::bad": "failed",
        "checks.sh::skip": "skipped",
    }
    assert "bad output" in result.stdout
    project.assert_clean(result.run_id)


def test_a_run_that_starts_no_test_keeps_the_last_reports(project: Project) -> None:
    project.write("tests/test_ok.py", "def test_ok():\n    pass\n")
    project.config()
    assert project.run().returncode == 0
    results = project.root / "test-results"
    good = {
        name: (results / name).read_text() for name in ("junit.xml", "report.json", "report.html")
    }

    # The worker port is taken: the run stops before any test starts.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        holder.bind(("127.0.0.1", project.port_base))
        holder.listen()
        stopped = project.run("--full")

    assert stopped.returncode == 3
    assert {name: (results / name).read_text() for name in good} == good, "kept as they were"
    aborted = json.loads((results / "aborted-run.json").read_text())
    assert aborted["exit_code"] == 3 and "already in use" in aborted["error"]
    assert aborted["counts"]["not run"] == 1
    assert (
        "reports: test-results/aborted-run.json (no test started: junit.xml, report.json and "
        "report.html are those of an earlier run)" in stopped.stdout
    )

    # The next run that runs tests writes the reports again, and the aborted report goes.
    again = project.run("--full")
    assert again.returncode == 0
    assert (results / "report.json").read_text() != good["report.json"]
    assert not (results / "aborted-run.json").exists()
    project.assert_clean(again.run_id)


def test_a_first_run_that_starts_no_test_writes_no_junit(project: Project) -> None:
    project.write("tests/test_ok.py", "def test_ok():\n    pass\n")
    project.config(server="sh -c 'echo cannot start; exit 1'")

    result = project.run()

    assert result.returncode == 3
    results = project.root / "test-results"
    assert sorted(p.name for p in results.iterdir()) == ["aborted-run.json", "logs"]
    assert result.report is not None and result.report["exit_code"] == 3
    assert "reports: test-results/aborted-run.json\n" in result.stdout
    project.assert_clean(result.run_id)
