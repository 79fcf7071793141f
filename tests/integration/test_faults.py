"""Fault tests: whatever happens to a run, nothing of ours is left behind."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import psutil
import pytest
from support import DEVSERVER, Project, send_ctrl_c, wait_until

HANGING_SUITE = """
import subprocess, sys, time
from pathlib import Path

def test_quick():
    pass

def test_hangs():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path({marker!r}).touch()
    time.sleep(600)
"""


def _record(project: Project) -> dict[str, object]:
    records = list((project.state / "runs").glob("*.json"))
    assert len(records) == 1
    return dict(json.loads(records[0].read_text()))


def _start_hanging_run(
    project: Project, tmp_path: Path, *, server_args: str = ""
) -> tuple[object, dict[str, object]]:
    marker = tmp_path / "hanging"
    project.write("tests/test_hang.py", HANGING_SUITE.format(marker=str(marker)))
    project.config(workers=2, server=f"{{python}} {DEVSERVER} {server_args}".strip())
    process = project.popen()
    wait_until(marker.exists, timeout=60, what="the hanging test to start")
    return process, _record(project)


@pytest.mark.parametrize("mode", ["session", "process"])
def test_ctrl_c_mid_run_stops_everything_and_reports(
    project: Project, tmp_path: Path, mode: str
) -> None:
    marker = tmp_path / "hanging"
    project.write("tests/test_hang.py", HANGING_SUITE.format(marker=str(marker)))
    project.config(workers=1, pytest_mode=mode)  # one worker: test_quick surely ran first
    process = project.popen()
    wait_until(marker.exists, timeout=60, what="the hanging test to start")
    run_id = str(_record(project)["run_id"])

    send_ctrl_c(process)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted" in stdout
    report = project.report()
    assert report is not None and report["interrupted"] is True
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses["tests/test_hang.py::test_quick"] == "passed"
    assert statuses["tests/test_hang.py::test_hangs"] == "not run"
    # The HTML report is written too, and says the run was interrupted.
    page = (project.root / "test-results" / "report.html").read_text()
    assert f"run {run_id}" in page and '<span class="verdict stopped">interrupted</span>' in page
    project.assert_clean(run_id)
    # What finished before the interrupt is in the cache.
    assert project.cache()["tests"]["tests/test_hang.py::test_quick"]["status"] == "passed"


def test_sigterm_mid_run_stops_everything(project: Project, tmp_path: Path) -> None:
    process, record = _start_hanging_run(project, tmp_path)
    os.kill(process.pid, signal.SIGTERM)  # type: ignore[attr-defined]
    process.communicate(timeout=60)  # type: ignore[attr-defined]
    assert process.returncode == 130  # type: ignore[attr-defined]
    project.assert_clean(str(record["run_id"]))


def test_second_ctrl_c_kills_at_once(project: Project, tmp_path: Path) -> None:
    # The servers ignore SIGTERM: a graceful stop would wait out the grace period for them.
    process, record = _start_hanging_run(project, tmp_path, server_args="--ignore-term")
    run_id = str(record["run_id"])
    send_ctrl_c(process)  # type: ignore[arg-type]
    # The first Ctrl-C is being handled once the hanging test is gone.
    wait_until(lambda: not _test_processes(run_id), timeout=30, what="the first Ctrl-C")
    send_ctrl_c(process)  # type: ignore[arg-type]
    process.communicate(timeout=60)  # type: ignore[attr-defined]
    assert process.returncode == 130  # type: ignore[attr-defined]
    project.assert_clean(run_id)


def _test_processes(run_id: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("TESTPOOL_RUN_ID") == run_id and "sleep(600)" in " ".join(
                proc.info["cmdline"] or []
            ):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _reaper_of(run_id: str) -> psutil.Process:
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any("testpool.reaper" in part for part in cmdline) and any(
            run_id in part for part in cmdline
        ):
            return proc
    raise AssertionError("no reaper found")


def test_sigkill_of_testpool_is_cleaned_by_the_reaper(project: Project, tmp_path: Path) -> None:
    process, record = _start_hanging_run(project, tmp_path)
    run_id = str(record["run_id"])
    reaper = _reaper_of(run_id)

    os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    process.wait(timeout=10)  # type: ignore[attr-defined]

    project.assert_clean(run_id)
    wait_until(lambda: not reaper.is_running(), timeout=10, what="the reaper to exit")


def test_sigkill_of_testpool_and_reaper_then_testpool_clean(
    project: Project, tmp_path: Path
) -> None:
    process, record = _start_hanging_run(project, tmp_path)
    run_id = str(record["run_id"])
    os.killpg(_reaper_of(run_id).pid, signal.SIGKILL)
    os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    process.wait(timeout=10)  # type: ignore[attr-defined]
    left = project.leftovers([run_id])
    assert any(item.startswith("tmux socket") for item in left), left
    assert any(item.startswith("listener on") for item in left), left
    assert any(item.startswith("temp folder") for item in left), left

    cleaned = project.run("clean")

    assert cleaned.returncode == 0
    assert f"run {run_id}: removed" in cleaned.stdout
    assert "its tmux server" in cleaned.stdout
    project.assert_clean(run_id)
    assert "nothing to clean" in project.run("clean").stdout


def test_next_run_sweeps_a_dead_run_first(project: Project, tmp_path: Path) -> None:
    process, record = _start_hanging_run(project, tmp_path)
    run_id = str(record["run_id"])
    os.killpg(_reaper_of(run_id).pid, signal.SIGKILL)
    os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    process.wait(timeout=10)  # type: ignore[attr-defined]
    project.write("tests/test_hang.py", "def test_quick(): pass\n")

    result = project.run()

    assert result.returncode == 0, result.stderr
    assert f"cleaned up after a dead run: run {run_id}" in result.stderr
    project.assert_clean(run_id, result.run_id)


def test_dev_server_killed_mid_test_is_restarted_and_the_suite_completes(
    project: Project, tmp_path: Path
) -> None:
    once = tmp_path / "killed-once"
    project.write(
        "tests/test_crash.py",
        textwrap.dedent(f"""
        import os, signal, httpx
        from pathlib import Path

        def test_kills_its_server():
            base = os.environ["TEST_BASE_URL"]
            if not Path({str(once)!r}).exists():
                Path({str(once)!r}).touch()
                os.killpg(httpx.get(base + "/pid").json()["pgid"], signal.SIGKILL)
            assert httpx.get(base + "/health").status_code == 200
        """)
        + "".join(
            f"\ndef test_other_{n}():\n    import os, httpx\n    assert httpx.get(os.environ['TEST_BASE_URL'] + '/health').status_code == 200\n"
            for n in range(6)
        ),
    )
    project.config(workers=2)

    result = project.run()

    assert result.returncode == 0, result.stdout
    assert set(result.statuses.values()) == {"passed"}
    report = result.report
    assert report is not None
    crashed = next(t for t in report["tests"] if t["id"].endswith("test_kills_its_server"))
    assert [a["status"] for a in crashed["attempts"]] == ["error", "passed"]
    assert crashed["attempts"][0]["worker"] != crashed["attempts"][1]["worker"]
    assert any("restarting" in event for event in report["infra_events"])
    worker_log = project.worker_log(result, crashed["attempts"][0]["worker"])
    assert "restarting the server" in worker_log.read_text()
    # The report's timeline has the restart where it happened, on that worker; the error
    # attempt's evidence has what its server printed while it ran.
    [event] = report["timed_events"]
    assert event["worker"] == crashed["attempts"][0]["worker"]
    assert event["text"] == "server died after error test; restarting"
    assert crashed["attempts"][0]["started"] <= event["at"] <= crashed["attempts"][1]["started"]
    assert "GET /pid" in crashed["attempts"][0]["evidence"]["server_log"]
    project.assert_clean(result.run_id)


def test_server_that_keeps_dying_retires_the_worker(project: Project) -> None:
    project.write(
        "tests/test_kill.py",
        "".join(
            f"""
def test_kill_{n}():
    import os, signal, httpx
    os.killpg(httpx.get(os.environ["TEST_BASE_URL"] + "/pid").json()["pgid"], signal.SIGKILL)
    httpx.get(os.environ["TEST_BASE_URL"] + "/health")
"""
            for n in range(6)
        ),
    )
    project.config(workers=1)

    result = project.run()

    assert result.returncode == 3
    assert "every worker was retired" in result.stderr
    assert "not run" in result.statuses.values()
    project.assert_clean(result.run_id)


def test_sigterm_during_discovery_exits_130_and_leaves_nothing(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "collecting"
    project.write(
        "tests/conftest.py",
        f"""
        import os, time
        from pathlib import Path
        if os.environ.get("TESTPOOL_COLLECT_FILE"):
            Path({str(marker)!r}).touch()
            time.sleep(600)
        """,
    )
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config()
    process = project.popen()
    wait_until(marker.exists, timeout=60, what="collection to start")

    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    project.assert_clean()
    assert not [proc.pid for proc in psutil.process_iter() if _in(proc, project)], "collector left"


def _in(proc: psutil.Process, project: Project) -> bool:
    try:
        return proc.environ().get("TESTPOOL_COLLECT_FILE", "").startswith(str(project.tmp))
    except psutil.Error:
        return False


# --- SIGKILL under a parent that reaps late, and at the very start of a run -----------------


def test_sigkill_while_the_parent_has_not_reaped_testpool_is_cleaned(
    project: Project, tmp_path: Path
) -> None:
    # A Python harness, a CI agent or PID 1 in a container may reap late: testpool stays a
    # zombie meanwhile, and a zombie is dead.
    process, record = _start_hanging_run(project, tmp_path)
    run_id = str(record["run_id"])

    os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    wait_until(
        lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE,  # type: ignore[attr-defined]
        what="testpool to be a zombie",
    )

    project.assert_clean(run_id)  # while the zombie is still there
    assert psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE  # type: ignore[attr-defined]
    process.wait(timeout=10)  # type: ignore[attr-defined]


def test_sigkill_while_tmux_starts_the_workers_leaves_nothing(
    project: Project, tmp_path: Path
) -> None:
    # The first server kills testpool while tmux is still creating the sessions and their log
    # pipes: tmux finishes the job on its own, with nobody reading the pipes any more.
    pid_file = tmp_path / "testpool.pid"
    project.write("tests/test_a.py", "def test_a(): pass\ndef test_b(): pass\n")
    project.config(
        workers=2,
        server=f'kill -9 "$(cat {pid_file})"; exec {{python}} {DEVSERVER}',
    )
    process = project.popen()
    pid_file.write_text(str(process.pid))

    process.communicate(timeout=60)

    assert process.returncode == -signal.SIGKILL
    project.assert_clean()
    wait_until(lambda: not _ours_without_run_id(project), timeout=10, what="no process of ours")


def test_sigkill_during_discovery_leaves_nothing(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "collecting"
    project.write(
        "tests/conftest.py",
        f"""
        import time
        from pathlib import Path
        Path({str(marker)!r}).touch()
        time.sleep(600)
        """,
    )
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config()
    process = project.popen()
    wait_until(marker.exists, timeout=60, what="collection to start")

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    project.assert_clean()
    wait_until(lambda: not list(project.tmp.iterdir()), timeout=10, what="an empty TMPDIR")
    wait_until(
        lambda: not _ours_without_run_id(project), timeout=10, what="the collector to be gone"
    )


def _ours_without_run_id(project: Project) -> list[str]:
    """Processes started on behalf of the project's runs, found by their TMPDIR."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("TMPDIR") == str(project.tmp) and proc.status() != "zombie":
                found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:100]}")
        except psutil.Error:
            continue
    return found
