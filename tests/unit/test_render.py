"""Rendering is pure: same state, same words."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
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


ODD_IDS = [
    "t.py::test_p[/health]",  # a closing markup tag
    "t.py::test_x[red]",  # a style
    "t.py::test_y[bold]x[/bold]",
    "t.py::test_z[:smile:]",  # an emoji code
    "t.py::test_e[\x1b]0;pwned\x07]",  # a window title
    "t.py::test_u[日本語🙂]",
]


def terminal_text(*renderables: object) -> str:
    """What a colour terminal would receive, markup and emoji codes enabled (rich's defaults)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system="truecolor")
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def test_board_shows_ids_as_plain_text() -> None:
    board = Board(
        total=6, started=0.0,
        workers=[WorkerView(i, 9000 + i, "running", test_id, 0.0) for i, test_id in enumerate(ODD_IDS)],
    )  # fmt: skip
    text = text_of(render_board(board, now=1.0, width=200))
    for shown in ODD_IDS[:4]:
        assert shown in text
    assert "t.py::test_e[\\x1b]0;pwned\\x07]" in text
    assert "t.py::test_u[日本語🙂]" in text
    raw = terminal_text(render_board(board, now=1.0, width=200))
    assert "\x1b]0;pwned" not in raw and "\x07" not in raw
    assert "test_x[red]" in raw and "😄" not in raw


def test_summary_shows_ids_messages_and_output_as_plain_text() -> None:
    output = "before\x1b[2J\x1b[H\x1b[?1049h\x1b]0;pwned\x07 after\x00\nsecond line\n"
    run = RunSummary(
        run_id="r",
        results=[
            TestResult(i, "t.py", Status.FAILED, 0.1, 0, message="[/oops] \x1b[31m", output=output)
            for i in ODD_IDS
        ],
        wall_time=1.0,
        workers=1,
        started_at="",
        worker_logs={0: "logs/[red]/worker-0.log"},
    )
    raw = terminal_text(*summary_renderables(run, verbose=True))
    for forbidden in ("\x1b[2J", "\x1b[?1049h", "\x1b]0;pwned", "\x00", "\x07"):
        assert forbidden not in raw
    plain = text_of(*summary_renderables(run, verbose=True))
    assert "FAILED   t.py::test_p[/health] [w0 0.10s] [/oops] \\x1b[31m" in plain
    assert "  before after\\x00\n  second line" in plain
    assert "worker log: logs/[red]/worker-0.log" in plain


def test_consoles_print_strings_without_markup(capsys: pytest.CaptureFixture[str]) -> None:
    from testpool.report.console import make_consoles

    out, err = make_consoles()
    out.print("test_p[/health] test_x[red] :smile:")
    err.print("[bold]x[/bold]")
    captured = capsys.readouterr()
    assert captured.out == "test_p[/health] test_x[red] :smile:\n"
    assert captured.err == "[bold]x[/bold]\n"


def test_junit_attributes_are_valid_xml_for_any_id() -> None:
    run = summary()
    odd = "t.py::test_c[\x01\x1b[31m\x00\x0c]"
    run.results = [
        TestResult(odd, "t\x1b.py", Status.FAILED, message="bad \x1b msg", output="x"),
        TestResult("t.py::test_c[\x02]", "t.py", Status.PASSED),
        TestResult("t.py::test_s[\ud800]", "t.py", Status.SKIPPED, message="\x07"),
    ]
    text = junit_xml(run)
    text.encode()  # no lone surrogate left to break the UTF-8 file
    document = ET.fromstring(text.split("\n", 1)[1])
    names = [case.get("name") for case in document.iter("testcase")]
    assert names == ["test_c[\\x01\\x1b[31m\\x00\\x0c]", "test_c[\\x02]", "test_s[\\ud800]"]
    failure = next(document.iter("failure"))
    assert failure.get("message") == "bad \\x1b msg"


def test_a_run_that_started_no_test_keeps_the_reports_it_would_replace(tmp_path: Path) -> None:
    from testpool.report.files import write_reports

    done = summary()
    assert not done.ran_nothing
    assert [p.name for p in write_reports(done, tmp_path)] == [
        "junit.xml",
        "report.json",
        "report.html",
    ]
    before = (tmp_path / "junit.xml").read_text()
    page = (tmp_path / "report.html").read_text()

    stopped = RunSummary("r2", [TestResult("a::t", "a", Status.NOT_RUN), TestResult("a::c", "a", Status.CACHED)], 0.1, 1, "", error="port taken", error_exit=3)  # fmt: skip
    assert stopped.ran_nothing
    assert [p.name for p in write_reports(stopped, tmp_path)] == ["aborted-run.json"]
    assert (tmp_path / "junit.xml").read_text() == before
    assert (tmp_path / "report.html").read_text() == page
    assert "port taken" in (tmp_path / "aborted-run.json").read_text()

    assert [p.name for p in write_reports(done, tmp_path)] == [
        "junit.xml",
        "report.json",
        "report.html",
    ]
    assert not (tmp_path / "aborted-run.json").exists()

    everything_cached = RunSummary("r3", [TestResult("a::c", "a", Status.CACHED)], 0.1, 0, "")
    assert not everything_cached.ran_nothing


def phased_summary() -> RunSummary:
    from testpool.results import PhaseResult

    return RunSummary(
        run_id="r2",
        results=[
            TestResult("s/a.py::test_1", "s/a.py", Status.PASSED, 0.1, 0, phase="smoke"),
            TestResult("s/a.py::test_2", "s/a.py", Status.FAILED, 0.2, 0, phase="smoke"),
            TestResult(
                "m/b.py::test_3",
                "m/b.py",
                Status.NOT_RUN,
                phase="other",
                message="not run: required phase 'smoke' failed",
            ),
            TestResult("m/b.py::test_4", "m/b.py", Status.CACHED, phase="other"),
        ],
        wall_time=3.0,
        workers=2,
        started_at="2026-11-22T10:00:00+00:00",
        phases=[
            PhaseResult("smoke", "sequential", True, "failed", 2, 0.3),
            PhaseResult("other", "parallel", False, "not run", 2, 0.0),
        ],
    )


def test_board_shows_the_phase() -> None:
    from testpool.report.render import phase_label

    label = phase_label("smoke", 1, 3, "sequential", True)
    assert label == "smoke (1/3, sequential, required)"
    assert phase_label("api", 2, 3, "parallel", False) == "api (2/3)"
    board = Board(total=4, started=0.0, phase=label, workers=[WorkerView(0, 9000, "idle")])
    first = text_of(render_board(board, now=1.0)).splitlines()[0]
    assert first.strip().startswith("phase smoke (1/3, sequential, required)  0/4")


def test_summary_shows_the_phases_and_which_stopped_the_run() -> None:
    text = text_of(*summary_renderables(phased_summary(), verbose=False))
    assert "  smoke  failed   sequential, required: 1 passed, 1 failed" in text
    assert "  other  not run  parallel: 1 cached, 1 not run" in text
    assert "required phase smoke failed: the later phases did not run" in text
    assert "Phases" not in text_of(*summary_renderables(summary(), verbose=False))


def test_junit_has_one_testsuite_per_phase() -> None:
    document = ET.fromstring(junit_xml(phased_summary()).split("\n", 1)[1])
    smoke, other = document.findall("./testsuite")
    assert (smoke.get("name"), smoke.get("tests"), smoke.get("failures")) == ("smoke", "2", "1")
    assert (other.get("name"), other.get("tests"), other.get("skipped")) == ("other", "2", "1")
    assert document.get("tests") == "4" and document.get("failures") == "1"
    properties = {p.get("name"): p.get("value") for p in smoke.findall("./properties/property")}
    assert properties == {
        "testpool.phase.mode": "sequential",
        "testpool.phase.required": "true",
        "testpool.phase.outcome": "failed",
    }
    case = other.find("testcase")
    assert case is not None
    phase = [p for p in case.findall("./properties/property") if p.get("name") == "testpool.phase"]
    assert phase[0].get("value") == "other"


def test_phases_round_trip_through_json() -> None:
    import json

    original = phased_summary()
    loaded = RunSummary.from_dict(json.loads(json.dumps(original.to_dict())))
    assert loaded.phases == original.phases
    assert [r.phase for r in loaded.results] == ["smoke", "smoke", "other", "other"]
    assert original.to_dict()["tests"][0]["phase"] == "smoke"
