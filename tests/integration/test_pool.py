"""The worker pool against real tmux and real dev servers."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from support import DEVSERVER, Project, wait_until

RECORD_ENV = """
import json, os, stat, httpx
from pathlib import Path

def test_record_{n}():
    served = httpx.get(os.environ["TEST_BASE_URL"] + "/env").json()
    data_dir = Path(os.environ["DATA_DIR"])
    seen = {{
        "worker": os.environ["TESTPOOL_WORKER"],
        "base_url": os.environ["TEST_BASE_URL"],
        "data_dir": str(data_dir),
        "mode": stat.S_IMODE(data_dir.stat().st_mode),
        "token": os.environ["API_TOKEN"],
        "extra": os.environ.get("EXTRA"),
        "server": served,
    }}
    out = Path({out!r}) / f"{n}.json"
    out.write_text(json.dumps(seen))
"""


def test_four_workers_start_in_parallel_each_isolated(project: Project, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    seen = tmp_path / "seen"
    seen.mkdir()
    project.write(
        "tests/test_env.py", "".join(RECORD_ENV.format(n=n, out=str(seen)) for n in range(8))
    )
    project.config(
        workers=4,
        server=f"{{python}} {DEVSERVER} --slow-start",
        env={"EXTRA": "from-config", "DEVSERVER_TRACE": str(trace)},
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    # Parallel start: every server began before the first one was ready.
    starts = [float((trace / f"{w}.start").read_text()) for w in range(4)]
    readies = [float((trace / f"{w}.ready").read_text()) for w in range(4)]
    assert max(starts) < min(readies)
    records = [json.loads(p.read_text()) for p in sorted(seen.glob("*.json"))]
    assert len(records) == 8
    by_worker: dict[str, dict[str, object]] = {}
    for record in records:
        by_worker.setdefault(record["worker"], record)
        first = by_worker[record["worker"]]
        assert record["data_dir"] == first["data_dir"], "one DATA_DIR per worker"
        assert record["mode"] == 0o700
        assert record["extra"] == "from-config"
        server = record["server"]
        assert server["DATA_DIR"] == record["data_dir"], "server and test share the DATA_DIR"
        assert server["TESTPOOL_WORKER"] == record["worker"]
        assert record["token"] == server["API_TOKEN"] == f"test-token-{record['worker']}"
        assert record["base_url"] == f"http://127.0.0.1:{project.port_base + int(record['worker'])}"
        assert server["TESTPOOL_RUN_ID"] == result.run_id
    assert sorted(by_worker) == ["0", "1", "2", "3"]
    assert len({r["data_dir"] for r in by_worker.values()}) == 4
    for record in by_worker.values():
        assert Path(str(record["data_dir"])).name.startswith("testpool-")
    worker_log = project.worker_log(result).read_text()
    assert "devserver: listening on" in worker_log
    assert "GET /env" in worker_log
    project.assert_clean(result.run_id)


def test_only_as_many_workers_as_tests(project: Project) -> None:
    project.write("tests/test_two.py", "def test_a(): pass\ndef test_b(): pass\n")
    project.config(workers=8)
    result = project.run()
    assert result.returncode == 0
    assert result.report is not None and result.report["workers"] == 2


def test_server_that_exits_at_start_fails_fast_with_its_log(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    # A generous start-up timeout: the run must not wait it out for a dead server.
    project.config(workers=2, server=f"{{python}} {DEVSERVER} --crash", startup_timeout=600)

    result = project.run(timeout=60)

    assert result.returncode == 3
    assert "worker 0 (port" in result.stderr
    assert "the server exited with status 3 before it became healthy" in result.stderr
    assert f"command: {sys.executable} {DEVSERVER} --crash" in result.stderr, "as it was run"
    assert "the database is on fire" in result.stderr, "the log tail is shown"
    project.assert_clean(result.run_id)


def test_server_that_exits_silently_is_said_so(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config(server="true", startup_timeout=600)

    result = project.run(timeout=60)

    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"testpool: error: worker 0 (port {project.port_base}) failed to start: "
        "the server exited with status 0 without output; command: true"
    ]
    project.assert_clean(result.run_id)


def test_server_log_tail_has_no_colours_or_blank_runs(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.write(
        "server.py",
        r"""
        import sys
        print("\x1b[31merror:\x1b[0m \x1b]0;title\x07port is bad" + "\n" * 30 + "\x1b[1mgiving up\x1b[0m")
        sys.exit(4)
        """,
    )
    project.config(server="{python} server.py", startup_timeout=600)

    result = project.run(timeout=60)

    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"testpool: error: worker 0 (port {project.port_base}) failed to start: the server "
        f"exited with status 4 before it became healthy; command: {sys.executable} server.py",
        "  error: port is bad",
        "  ",
        "  giving up",
    ]
    project.assert_clean(result.run_id)


def test_server_that_never_answers_times_out_clearly(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config(server=f"{{python}} {DEVSERVER} --mute", startup_timeout=1)

    result = project.run()

    assert result.returncode == 3
    first_line = result.stderr.strip().splitlines()[0]
    assert first_line.startswith(
        f"testpool: error: worker 0 (port {project.port_base}) failed to start"
    )
    assert "not healthy after 1 s" in first_line
    assert "devserver: muted" in result.stderr
    assert result.statuses == {"tests/test_a.py::test_a": "not run"}
    project.assert_clean(result.run_id)


def _leave_in_time_wait(port: int) -> None:
    """Leave ``port`` in TIME_WAIT, as an earlier run's server does: the listening side closes
    an accepted connection first."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()
            assert client.recv(1) == b""  # the server's close reached the client


def test_port_held_by_a_foreign_process_is_reported_and_left_alone(project: Project) -> None:
    port = project.port_base + 1
    # Regression (of this test): a port in TIME_WAIT from an earlier test's run made the
    # foreign listener fail to bind, so the test failed when rerun at once.
    _leave_in_time_wait(port)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,time; s=socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1',{port})); s.listen(); print('up', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        project.write("tests/test_a.py", "def test_a(): pass\ndef test_b(): pass\n")
        project.config(workers=2)

        result = project.run()

        assert result.returncode == 3
        assert f"{port} (held by pid {holder.pid}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert holder.poll() is None, "testpool must not touch a process it did not start"

        cleaned = project.run("clean")
        assert f"port {port} is held by pid {holder.pid}" in cleaned.stdout
        assert holder.poll() is None
        assert project.leftovers() == [f"listener on {port} (pid {holder.pid})"]
    finally:
        holder.kill()
        holder.wait()


def test_worker_logs_are_readable_after_the_run(project: Project) -> None:
    project.write(
        "tests/test_a.py",
        "import os, httpx\ndef test_a(): httpx.get(os.environ['TEST_BASE_URL'] + '/sleep?ms=1')\n",
    )
    project.config()
    result = project.run()
    assert result.returncode == 0
    assert result.report is not None
    assert result.report["worker_logs"]["0"] == f"test-results/logs/{result.run_id}/worker-0.log"
    assert "GET /sleep?ms=1" in project.worker_log(result).read_text()


def test_tmux_session_can_be_attached_while_running(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    project.write(
        "tests/test_a.py",
        f"""
        import time
        from pathlib import Path
        def test_waits():
            Path({str(marker)!r}).touch()
            deadline = time.monotonic() + 60
            while Path({str(marker)!r}).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        """,
    )
    project.config()
    process = project.popen()
    try:
        wait_until(marker.exists, timeout=60, what="the test to start")
        records = list((project.state / "runs").glob("*.json"))
        assert len(records) == 1
        record = json.loads(records[0].read_text())
        assert stat.S_IMODE((project.state / "runs").stat().st_mode) == 0o700
        sessions = subprocess.run(
            ["tmux", "-L", record["socket"], "list-sessions", "-F", "#{session_name}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert sessions == ["worker-0"]
        pane = subprocess.run(
            ["tmux", "-L", record["socket"], "capture-pane", "-p", "-t", "worker-0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "devserver: listening on" in pane
        marker.unlink()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    project.assert_clean(record["run_id"])
