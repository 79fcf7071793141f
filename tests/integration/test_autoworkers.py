"""workers = "auto" with real servers: a server that costs a second of CPU to start gets fewer
workers than a cheap one, on the same suite and machine (this one has 2 cores)."""

from __future__ import annotations

import re

from support import DEVSERVER, Project

# Burns ~1 s of CPU (as a dev server that compiles or bundles at start would), then serves.
HEAVY = f"""
import runpy, sys, time

started = time.process_time()
while time.process_time() - started < 1.0:
    pass
sys.argv = [{str(DEVSERVER)!r}]
runpy.run_path({str(DEVSERVER)!r}, run_name="__main__")
"""

SUITE = """
import os
import urllib.request

import pytest

@pytest.mark.parametrize("n", range(8))
def test_page(n):
    url = os.environ["TEST_BASE_URL"] + "/sleep?ms=200"
    with urllib.request.urlopen(url) as response:
        assert response.status == 200
"""

CHOICE = re.compile(r"^testpool: workers: auto: (\d) worker\(s\), (.*)$", re.M)


def _auto(project: Project, *args: str) -> tuple[int, str]:
    result = project.run("--workers", "auto", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    found = CHOICE.search(result.stdout)
    assert found, result.stdout
    assert result.report is not None
    choice = result.report["workers_choice"]
    assert choice["auto"] is True and choice["workers"] == int(found.group(1))
    assert result.report["workers"] == choice["workers"]
    project.assert_clean(result.run_id)
    return int(found.group(1)), found.group(2)


def _server_costs(project: Project) -> dict[str, dict[str, float]]:
    stats = project.cache()["stats"]
    return {key: dict(value) for key, value in stats.items() if key.startswith("server:")}


def test_a_costly_server_start_gets_fewer_workers_than_a_cheap_one(project: Project) -> None:
    project.write("tests/test_pages.py", SUITE)
    project.write("heavy.py", HEAVY)

    project.config()
    first, why = _auto(project)  # nothing measured yet
    assert first == 2 and "no server start measured yet: min(cores 2, tests 8, 4)" in why
    cheap_choice, cheap_why = _auto(project, "--full")
    ((cheap_key, cheap),) = _server_costs(project).items()

    project.config(server="{python} heavy.py")  # another server: measured anew
    assert _auto(project, "--full")[1].startswith("no server start measured yet")
    (heavy,) = [cost for key, cost in _server_costs(project).items() if key != cheap_key]
    heavy_choice, heavy_why = _auto(project, "--full")

    assert heavy["cpu"] >= 0.9 > 0.5 > cheap["cpu"], (heavy, cheap)
    assert heavy_choice < cheap_choice, (heavy_why, cheap_why)
    assert heavy_choice == 1, heavy_why  # 2 cores: a second server costs more than it saves
    assert "predicted start-up + tests" in heavy_why and "8 test(s)" in heavy_why


def test_auto_plans_for_a_shards_tests_and_a_queue_machines_tests_to_run(
    project: Project, redis_url: str
) -> None:
    """With --shard, auto plans for this shard's tests; a --queue machine gets the whole build
    (its cached tests too) and plans for the build's tests to run, as if it ran them alone."""
    project.write("tests/test_pages.py", SUITE)  # 8 tests
    project.write("tests/test_other.py", "def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    project.config()
    assert project.run("-w", "2").returncode == 0  # durations and a server start recorded

    shard = project.run("--workers", "auto", "--shard", "1/2", "--full")
    assert shard.returncode == 0, shard.stdout + shard.stderr
    assert shard.report is not None
    assert f"{len(shard.statuses)} test(s)" in shard.report["workers_choice"]["reason"]
    assert len(shard.statuses) < 10

    (project.root / "tests/test_other.py").write_text("def test_one():\n    pass\n")
    queued = project.run("--workers", "auto", "--queue", redis_url, "--build", "b1")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert queued.report is not None
    assert "1 test(s)" in queued.report["workers_choice"]["reason"], queued.report
    assert queued.report["workers_choice"]["workers"] == 1
    project.assert_clean(queued.run_id)
