"""Rendering is pure: same state, same words."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from rich.console import Console

from testpool.report.files import junit_xml, split_id
from testpool.report.render import Board, WorkerView, render_board, summary_renderables
from testpool.results import Attempt, RunSummary, Status, TestResult


def text_of(*renderables: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None, force_terminal=False)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def summary() -> RunSummary:
    output = "\n".join(f"line {n}" for n in range(50))
    return RunSummary(
        run_id="r1",
        results=[
            TestResult("e2e/a.py::TestA::test_ok", "e2e/a.py", Status.PASSED, 0.1, 0),
            TestResult(
                "e2e/a.py::TestA::test_bad",
                "e2e/a.py",
                Status.FAILED,
                0.2,
                1,
                attempts=(Attempt(1, Status.FAILED, 0.2, 0.0, 0.2),),
                log_path="test-results/logs/tests/x.log",
                message="assert 1 == 2",
                output=output,
            ),
            TestResult("e2e/b.py::test_flaky", "e2e/b.py", Status.FLAKY, 0.3, 0),
            TestResult("e2e/b.py::test_cached", "e2e/b.py", Status.CACHED),
            TestResult("e2e/b.py::test_skip", "e2e/b.py", Status.SKIPPED, message="no"),
        ],
        wall_time=2.5,
        workers=2,
        started_at="2026-11-22T10:00:00+00:00",
        worker_logs={0: "test-results/logs/worker-0.log", 1: "test-results/logs/worker-1.log"},
    )


def test_summary_shows_failure_tail_logs_and_counts() -> None:
    text = text_of(*summary_renderables(summary(), verbose=False))
    assert "FAILED   e2e/a.py::TestA::test_bad [w1 0.20s] assert 1 == 2" in text
    assert "line 49" in text and "line 20" in text and "line 19" not in text
    assert "last 30 lines (-v for all)" in text
    assert "test log:   test-results/logs/tests/x.log" in text
    assert "worker log: test-results/logs/worker-1.log" in text
    assert "Flaky" in text and "e2e/b.py::test_flaky" in text
    assert "1 passed, 1 failed, 1 flaky, 1 skipped, 1 cached in 2.5s (2 worker(s))" in text


def test_verbose_summary_shows_all_output() -> None:
    text = text_of(*summary_renderables(summary(), verbose=True))
    assert "line 0" in text


def test_exit_codes() -> None:
    assert summary().exit_code() == 1
    ok = summary()
    ok.results = [r for r in ok.results if r.status is not Status.FAILED]
    assert ok.exit_code() == 0
    ok.fail_on_flaky = True
    assert ok.exit_code() == 1
    ok.interrupted = True
    assert ok.exit_code() == 130


def test_summary_round_trips_through_json() -> None:
    import json

    original = summary()
    original.fail_on_flaky = True
    original.error, original.error_detail, original.error_exit = "boom", "tail", 3
    loaded = RunSummary.from_dict(json.loads(json.dumps(original.to_dict())))
    assert loaded.results == original.results
    assert loaded.exit_code() == original.exit_code() == 3
    assert loaded.to_dict() == original.to_dict()


def test_board_shows_progress_and_workers() -> None:
    board = Board(
        total=10, started=100.0, done=4, failed=1, remaining_estimate=12.0,
        workers=[WorkerView(0, 9000, "running", "e2e/a.py::test_x", 103.0), WorkerView(1, 9001, "idle")],
    )  # fmt: skip
    text = text_of(render_board(board, now=105.0, width=100))
    lines = text.splitlines()
    assert lines[0].strip().startswith("4/10")
    assert lines[2].startswith("w0") and lines[3].startswith("w1"), "one line per worker"
    assert "4/10" in text and "1 failed" in text
    assert "elapsed 5.0s" in text and "eta 6.0s" in text
    assert "w0" in text and "9000" in text and "e2e/a.py::test_x" in text and "2.0s" in text
    assert "w1" in text and "idle" in text


def test_junit_is_valid_and_one_testcase_per_test() -> None:
    document = ET.fromstring(junit_xml(summary()).split("\n", 1)[1])
    cases = document.findall("./testsuite/testcase")
    assert len(cases) == 5
    bad = next(c for c in cases if c.get("name") == "test_bad")
    assert bad.get("classname") == "e2e.a.TestA" and bad.get("file") == "e2e/a.py"
    assert bad.find("failure") is not None
    assert next(c for c in cases if c.get("name") == "test_skip").find("skipped") is not None
    assert document.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


def test_junit_survives_control_characters() -> None:
    run = summary()
    run.results[1] = TestResult("x::y", "x", Status.FAILED, output="bad \x00\x1b[31m bytes")
    ET.fromstring(junit_xml(run).split("\n", 1)[1])


def test_split_id() -> None:
    assert split_id("pkg/api_test.go::TestX") == ("pkg.api_test", "TestX")
    assert split_id("plain-id") == ("tests", "plain-id")
    assert split_id("a/b.py::TestC::test[x::y]") == ("a.b.TestC", "test[x::y]")
