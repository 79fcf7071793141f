"""The start-up timeline and which test files are prepared before the first test."""

from __future__ import annotations

import os

from testpool.startup import Timeline, files_to_prepare_first, process_age

FILES = ["t/test_slow.py", "t/test_b.py", "t/test_c.py", "t/test_d.py"]


def test_never_more_than_the_files_of_the_tests_to_run() -> None:
    # 4 workers on 2 cores: every file that has a test to run, up front, once.
    assert files_to_prepare_first(FILES[:2], 2, workers=4, cores=2) == (
        "t/test_slow.py",
        "t/test_b.py",
    )
    assert files_to_prepare_first(FILES, 2, workers=4, cores=2) == tuple(FILES)


def test_only_the_first_wave_when_the_workers_can_afford_the_rest() -> None:
    # One worker prepares each other file once, as the zygote would have.
    assert files_to_prepare_first(FILES, 1, workers=1, cores=2) == ("t/test_slow.py",)
    # Two cores per worker: a file prepared by several workers costs no wall time.
    assert files_to_prepare_first(FILES, 2, workers=4, cores=8) == ("t/test_slow.py", "t/test_b.py")
    assert files_to_prepare_first(FILES, 2, workers=4, cores=7) == tuple(FILES)


def test_timeline_spans_since_the_process_started() -> None:
    now = [100.0]
    timeline = Timeline(lambda: now[0], age=0.5)
    timeline.begin("collect")
    now[0] = 100.25
    timeline.end("collect")
    timeline.mark("first test started")
    now[0] = 101.0
    timeline.mark("first test started")  # a later test is not the first
    timeline.end("collect")
    timeline.facts["discovery"] = "cached"
    assert timeline.to_dict() == {
        "since": "process start",
        "discovery": "cached",
        "phases": [
            {"name": "python and testpool imports", "start": 0.0, "end": 0.5, "seconds": 0.5},
            {"name": "collect", "start": 0.5, "end": 0.75, "seconds": 0.25},
            {"name": "first test started", "start": 0.75, "end": 0.75, "seconds": 0.0},
        ],
    }


def test_a_span_never_ended_has_no_end() -> None:
    timeline = Timeline(lambda: 5.0)
    timeline.begin("tmux launch")
    assert timeline.to_dict()["phases"] == [{"name": "tmux launch", "start": 0.0}]


def test_this_process_has_an_age() -> None:
    age = process_age()
    assert 0 < age < 24 * 3600
    # The kernel's clock, not psutil's (whose boot time is rounded to the second).
    assert os.path.exists("/proc/uptime")


def test_a_frozen_timeline_keeps_its_spans() -> None:
    now = [5.0]
    timeline = Timeline(clock=lambda: now[0])
    timeline.begin("collecting")
    now[0] = 6.0
    timeline.freeze()
    timeline.end("collecting")
    timeline.mark("first test started")
    assert timeline.get("collecting") == (0.0, None)
    assert timeline.get("first test started") is None
