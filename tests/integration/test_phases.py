"""Phases, for real: in order on the same pool, sequential ones one test at a time, a failed
required phase stops the run, an optional one does not."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from support import Project, send_ctrl_c, wait_until

SMOKE = """
import time

def test_one():
    time.sleep(0.3)

def test_two():
    time.sleep(0.3)

def test_three():
    time.sleep(0.3)
    assert {three_passes}, "smoke test three failed"
"""

MAIN = """
import time
import pytest

@pytest.mark.parametrize("n", range(4))
def test_main(n):
    time.sleep(0.2)
"""

PHASES = [
    {"name": "smoke", "select": ["tests/smoke/*"], "mode": "sequential", "required": True},
]


def attempts(report: dict[str, Any], prefix: str) -> list[tuple[float, float, int]]:
    return sorted(
        (a["started"], a["finished"], a["worker"])
        for t in report["tests"]
        if t["id"].startswith(prefix)
        for a in t["attempts"]
    )


def test_a_sequential_phase_runs_one_test_at_a_time_before_the_rest(project: Project) -> None:
    project.write("tests/smoke/test_smoke.py", SMOKE.format(three_passes=True))
    project.write("tests/test_main.py", MAIN)
    project.config(workers=3, phases=PHASES)

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    report = result.report
    assert report is not None
    smoke = attempts(report, "tests/smoke/")
    main = attempts(report, "tests/test_main.py")
    assert len(smoke) == 3 and len(main) == 4
    for (_, finished, _), (started, _, _) in itertools.pairwise(smoke):
        assert finished <= started, f"smoke tests overlapped: {smoke}"
    assert max(f for _, f, _ in smoke) <= min(s for s, _, _ in main), "a test ran too early"
    assert len({w for _, _, w in main}) > 1  # the implicit last phase runs in parallel
    assert {t["id"]: t["phase"] for t in report["tests"]} == {
        **{f"tests/smoke/test_smoke.py::test_{n}": "smoke" for n in ("one", "two", "three")},
        **{f"tests/test_main.py::test_main[{n}]": "other" for n in range(4)},
    }
    assert [(p["name"], p["outcome"]) for p in report["phases"]] == [
        ("smoke", "passed"),
        ("other", "passed"),
    ]
    assert "testpool: phase smoke (1/2, sequential, required): 3 test(s)" in result.stdout
    assert "testpool: phase other (2/2): 4 test(s)" in result.stdout
    project.assert_clean(result.run_id)


def test_a_failed_required_phase_stops_the_run(project: Project) -> None:
    project.write("tests/smoke/test_smoke.py", SMOKE.format(three_passes=False))
    project.write("tests/test_main.py", MAIN)
    project.config(workers=2, phases=PHASES)

    result = project.run()

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.statuses == {
        "tests/smoke/test_smoke.py::test_one": "passed",
        "tests/smoke/test_smoke.py::test_two": "passed",
        "tests/smoke/test_smoke.py::test_three": "failed",
        **{f"tests/test_main.py::test_main[{n}]": "not run" for n in range(4)},
    }
    report = result.report
    assert report is not None
    assert {t["message"] for t in report["tests"] if t["status"] == "not run"} == {
        "not run: required phase 'smoke' failed"
    }
    assert [(p["name"], p["outcome"]) for p in report["phases"]] == [
        ("smoke", "failed"),
        ("other", "not run"),
    ]
    assert "required phase smoke failed: the later phases did not run" in result.stdout
    assert "  smoke  failed   sequential, required: 2 passed, 1 failed" in result.stdout
    suites = ET.parse(project.root / "test-results" / "junit.xml").getroot().findall("testsuite")
    assert [(s.get("name"), s.get("failures"), s.get("skipped")) for s in suites] == [
        ("smoke", "1", "0"),
        ("other", "0", "4"),
    ]
    project.assert_clean(result.run_id)
    # The tests that did not run are not cached as anything: they run next time.
    listing = project.run("list").listing
    assert listing["tests/test_main.py::test_main[0]"] == ("run", "not in cache")


def test_an_optional_phase_failure_is_reported_and_the_run_goes_on(project: Project) -> None:
    project.write(
        "tests/test_quick.py",
        """
        import pytest

        @pytest.mark.quick
        def test_quick_fails():
            assert False, "quick failure"

        @pytest.mark.quick
        def test_quick_passes():
            pass
        """,
    )
    project.write("tests/test_main.py", MAIN)
    project.write("tests/pytest.ini", "[pytest]\nmarkers =\n    quick: fast checks\n")
    project.config(
        workers=2,
        pytest_args=["--strict-markers"],
        phases=[
            {"name": "quick", "marker": "quick"},
            {"name": "main", "select": ["tests/test_main.py::*"], "required": True},
        ],
    )

    result = project.run()

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.statuses["tests/test_quick.py::test_quick_fails"] == "failed"
    assert {result.statuses[f"tests/test_main.py::test_main[{n}]"] for n in range(4)} == {"passed"}
    assert result.report is not None
    assert [(p["name"], p["outcome"]) for p in result.report["phases"]] == [
        ("quick", "failed"),
        ("main", "passed"),
    ]

    # --max-failures counts across phases: the first failure stops the later phases too.
    stopped = project.run("-x", "--full")
    assert stopped.returncode == 1
    assert stopped.report is not None
    assert {
        t["message"] for t in stopped.report["tests"] if t["id"].startswith("tests/test_main")
    } == {"stopped: --max-failures reached"}
    project.assert_clean(result.run_id, stopped.run_id)


def test_an_interrupted_phase_is_stopped_and_the_later_not_run(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "blocking"
    project.write(
        "tests/smoke/test_smoke.py",
        f"""
        import time
        from pathlib import Path

        def test_done():
            pass

        def test_blocks():
            Path({str(marker)!r}).touch()
            time.sleep(600)
        """,
    )
    project.write("tests/test_main.py", MAIN)
    project.config(workers=1, phases=PHASES)
    process = project.popen()
    wait_until(marker.exists, timeout=60, what="the blocking test to start")

    send_ctrl_c(process)
    process.communicate(timeout=60)

    assert process.returncode == 130
    report = project.report()
    assert report is not None
    assert [(p["name"], p["outcome"]) for p in report["phases"]] == [
        ("smoke", "stopped"),
        ("other", "not run"),
    ]
    assert {t["message"] for t in report["tests"] if t["status"] == "not run"} == {"interrupted"}
    project.assert_clean(report["run_id"])
