"""Shared services, for real: redis-server from Debian and a second Python HTTP server, started
once per run, shared by the workers, restarted when they die, and never left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import REPO, Project, send_ctrl_c, wait_until

MOCK = REPO / "tests" / "fixtures" / "mockservice.py"
REDIS = shutil.which("redis-server")

# redis-server is a Debian package (.ci/run installs it); the tests that need it say so. In CI
# (TESTPOOL_REQUIRE_REDIS=1, as for the queue's tests) they run, and fail without it.
needs_redis = pytest.mark.skipif(
    REDIS is None and not os.environ.get("TESTPOOL_REQUIRE_REDIS"),
    reason="redis-server is not installed",
)

# A redis that keeps nothing on disk (it would write dump.rdb into the project otherwise).
REDIS_SERVICE = {
    "command": "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir {data_dir}",
    "port": "auto",
    "url": "redis://127.0.0.1:{port}/0",
}

# Talks to redis in its inline protocol over a plain socket: no client library needed.
REDIS_HELPER = """
import os, socket, time

def redis(*words):
    with socket.create_connection(("127.0.0.1", int(os.environ["DB_PORT"])), timeout=10) as s:
        s.sendall(" ".join(words).encode() + b"\\r\\n")
        return s.recv(4096).decode().strip()
"""


def mock_service(**keys: Any) -> dict[str, Any]:
    return {
        "command": f"{{python}} {MOCK}",
        "port": "auto",
        "probe": {"http": "http://127.0.0.1:{port}/health"},
        **keys,
    }


def processes_of(run_id: str, name: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("TESTPOOL_RUN_ID") == run_id and name in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def listening(port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        for c in psutil.net_connections(kind="inet")
    )


def record_of(project: Project) -> dict[str, Any]:
    records = list((project.state / "runs").glob("*.json"))
    assert len(records) == 1, records
    return dict(json.loads(records[0].read_text()))


@needs_redis
def test_redis_and_a_python_service_shared_by_four_workers(
    project: Project, tmp_path: Path
) -> None:
    starts = tmp_path / "mock-starts"
    project.write(
        "tests/test_shared.py",
        REDIS_HELPER
        + textwrap.dedent("""
        import httpx, pytest

        @pytest.mark.requires("db")
        @pytest.mark.parametrize("n", range(4))
        def test_meet_the_other_workers(n):
            # Every test waits in redis until four workers have checked in: four tests of
            # four workers at once, on one redis.
            redis("SADD", "workers", os.environ["TESTPOOL_WORKER"])
            redis("INCR", "visits")
            deadline = time.monotonic() + 60
            while redis("SCARD", "workers") != ":4":
                assert time.monotonic() < deadline, redis("SMEMBERS", "workers")
                time.sleep(0.05)

        def test_the_server_got_the_placeholder():
            served = httpx.get(os.environ["TEST_BASE_URL"] + "/env").json()
            assert served["EXTRA"] == os.environ["DB_URL"]
            assert os.environ["DB_URL"] == "redis://127.0.0.1:" + os.environ["DB_PORT"] + "/0"

        def test_the_mock_is_there():
            assert httpx.get(os.environ["MOCK_URL"] + "/health").status_code == 200
            assert os.environ["MOCK_URL"] == "http://127.0.0.1:" + os.environ["MOCK_PORT"]
        """),
    )
    project.write(
        "tests/test_check.py",
        REDIS_HELPER
        + textwrap.dedent("""
        def test_every_worker_used_the_same_redis():
            assert redis("INCRBY", "visits", "0") == ":4"
            assert redis("SCARD", "workers") == ":4"
        """),
    )
    project.config(
        workers=4,
        env={"EXTRA": "{services.db.url}"},  # the servers need db: it starts before them
        services={
            # A slow start: the mock, which refuses to start without db, must wait for it.
            "db": {**REDIS_SERVICE, "command": "sleep 1 && exec " + REDIS_SERVICE["command"]},
            "mock": mock_service(
                depends_on=["db"],
                env={"NEEDS_TCP": "127.0.0.1:{services.db.port}", "STARTS_FILE": str(starts)},
            ),
            "unused": mock_service(env={"STARTS_FILE": str(tmp_path / "unused-starts")}),
        },
        requires={"tests/test_shared.py::test_the_mock*": ["mock"]},
        phases=[
            {"name": "shared", "select": ["tests/test_shared.py::*"]},
            {"name": "check", "select": ["tests/test_check.py::*"], "mode": "sequential"},
        ],
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}, result.statuses
    report = result.report
    assert report is not None
    workers = {t["worker"] for t in report["tests"] if "meet_the_other" in t["id"]}
    assert workers == {0, 1, 2, 3}
    services = {s["name"]: s for s in report["services"]}
    assert set(services) == {"db", "mock"}  # "unused" is needed by no test: never started
    assert not (tmp_path / "unused-starts").exists()
    assert len(starts.read_text().splitlines()) == 1  # once per run, not once per worker
    db_log = project.root / services["db"]["log"]
    assert db_log == project.root / "test-results" / "logs" / result.run_id / "services" / "db.log"
    assert "Ready to accept connections" in db_log.read_text()
    mock_log = (project.root / services["mock"]["log"]).read_text()
    assert "mockservice: listening" in mock_log
    # Stopped in reverse dependency order: the mock before the redis it depends on.
    assert f"at stop, 127.0.0.1:{services['db']['port']} is up" in mock_log
    assert f"services: db (port {services['db']['port']}), mock" in result.stdout
    project.assert_clean(result.run_id)
    assert not processes_of(result.run_id, "redis-server")
    assert not listening(services["db"]["port"]) and not listening(services["mock"]["port"])


def test_only_the_services_of_the_tests_that_run_start(project: Project, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    project.write(
        "tests/test_a.py",
        """
        import os, httpx, pytest

        @pytest.mark.requires("mock")
        def test_uses_mock():
            assert httpx.get(os.environ["MOCK_URL"] + "/health").status_code == 200
        """,
    )
    project.write("tests/test_b.py", "def test_plain():\n    pass\n")
    project.config(
        workers=2,
        services={"mock": mock_service(env={"STARTS_FILE": str(starts)})},
        # --strict-markers: the requires marker is declared by testpool
        pytest_args=["--strict-markers"],
    )

    first = project.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(starts.read_text().splitlines()) == 1

    cached = project.run()
    assert cached.returncode == 0
    assert set(cached.statuses.values()) == {"cached"}
    assert "no worker started" in cached.stdout
    assert len(starts.read_text().splitlines()) == 1  # a fully cached run starts no service
    assert cached.report is not None and cached.report["services"] == []

    project.write("tests/test_b.py", "def test_plain():\n    assert True\n")
    plain_only = project.run()
    assert plain_only.statuses == {
        "tests/test_a.py::test_uses_mock": "cached",
        "tests/test_b.py::test_plain": "passed",
    }
    assert len(starts.read_text().splitlines()) == 1  # the test that ran needs no service
    assert plain_only.report is not None and plain_only.report["services"] == []

    # A changed service reruns the tests that use it, and only those.
    project.config(
        workers=2,
        services={"mock": mock_service(env={"STARTS_FILE": str(starts), "NEW": "1"})},
        pytest_args=["--strict-markers"],
    )
    listing = project.run("list")
    assert listing.listing == {
        "tests/test_a.py::test_uses_mock": ("run", "services changed"),
        "tests/test_b.py::test_plain": ("cached", "unchanged"),
    }
    project.assert_clean(first.run_id, plain_only.run_id)


def test_an_unknown_requirement_is_a_config_error_listing_the_known(project: Project) -> None:
    project.write(
        "tests/test_a.py",
        """
        import pytest

        @pytest.mark.requires("postgres")
        def test_a():
            pass
        """,
    )
    project.config(services={"db": REDIS_SERVICE, "mock": mock_service()})

    result = project.run()

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "testpool: error: test tests/test_a.py::test_a requires unknown service 'postgres' "
        "(known services: db, mock)"
    )
    assert "Traceback" not in result.stderr


def test_a_service_that_does_not_start_stops_the_run_with_its_log(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(
        workers=2,
        services={"mock": mock_service(env={"CRASH": "1"})},
        server_requires=["mock"],
    )

    result = project.run()

    assert result.returncode == 3, result.stdout + result.stderr
    first, *detail = result.stderr.strip().splitlines()
    assert first.startswith(
        "testpool: error: service mock failed to start: it exited with status 3 before it "
        "was ready; command: "
    ), first
    assert str(MOCK) in first
    assert "mockservice: cannot start: the fixture is on fire" in "\n".join(detail)
    assert result.report is not None and result.report["workers"] == 0  # no worker started
    project.assert_clean(result.run_id)


@needs_redis
def test_a_taken_fixed_port_is_refused_naming_its_holder(project: Project, tmp_path: Path) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    taken = project.port_base + 7  # inside our own block: free unless we hold it
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past runs' TIME_WAIT
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        project.config(
            services={
                "db": {**REDIS_SERVICE, "port": taken},
                "mock": mock_service(env={"NEEDS_TCP": "127.0.0.1:{services.db.port}"}),
            },
            server_requires=["mock"],
        )
        result = project.run()

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"service db: port {taken} is already in use (held by pid {os.getpid()}" in (
        result.stderr
    )
    project.assert_clean(result.run_id)


SERVICE_DIES = """
import os, time, httpx, pytest
from pathlib import Path

@pytest.mark.requires("mock")
def test_kills_the_service():
    if not Path({once!r}).exists():
        Path({once!r}).touch()
        try:
            httpx.get(os.environ["MOCK_URL"] + "/die")
        except httpx.TransportError:
            pass
        time.sleep(60)  # testpool sees the service die and ends this attempt at once
    assert httpx.get(os.environ["MOCK_URL"] + "/health").status_code == 200

@pytest.mark.parametrize("n", range(4))
def test_needs_no_service(n):
    pass
"""


def test_a_service_that_dies_is_restarted_and_its_tests_retried(
    project: Project, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    project.write("tests/test_die.py", SERVICE_DIES.format(once=str(tmp_path / "killed")))
    project.config(workers=2, services={"mock": mock_service(env={"STARTS_FILE": str(starts)})})

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}
    report = result.report
    assert report is not None
    killer = next(t for t in report["tests"] if t["id"].endswith("test_kills_the_service"))
    assert [a["status"] for a in killer["attempts"]] == ["error", "passed"]
    assert killer["attempts"][0]["message"] == "service mock died during this test"
    assert killer["attempts"][0]["duration"] < 30  # not the 60 s the test would have slept
    assert len(starts.read_text().splitlines()) == 2
    (mock,) = report["services"]
    assert mock["restarts"] == 1
    assert (
        "service mock exited with status 7 during the run; restarting it"
        in (report["infra_events"])
    )
    log = (project.root / mock["log"]).read_text()
    assert "mockservice: told to die" in log and "restarting (exited with status 7)" in log
    [event] = report["timed_events"]  # on the report's timeline
    assert (event["service"], event["text"]) == ("mock", "exited with status 7; restarting it")
    project.assert_clean(result.run_id)


def test_a_service_that_keeps_dying_stops_the_run_with_exit_3(
    project: Project, tmp_path: Path
) -> None:
    project.write(
        "tests/test_die.py",
        """
        import os, time, httpx, pytest

        @pytest.mark.requires("mock")
        @pytest.mark.parametrize("n", range(3))
        def test_kills_the_service(n):
            try:
                httpx.get(os.environ["MOCK_URL"] + "/die")
            except httpx.TransportError:
                pass
            time.sleep(60)

        def test_last():
            pass
        """,
    )
    project.config(workers=1, services={"mock": mock_service()})

    result = project.run(timeout=240)

    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(
        "testpool: error: service mock exited with status 7 during the run, after 2 "
        "restart(s); log: test-results/logs/"
    ), lines
    assert "mockservice: told to die" in "\n".join(lines[1:])  # its log tail
    statuses = result.statuses
    assert "error" in statuses.values()
    not_run = [t for t in result.report["tests"] if t["status"] == "not run"]  # type: ignore[index]
    assert not_run and all(t["message"].startswith("not run: service mock exited") for t in not_run)
    assert result.report is not None and result.report["services"][0]["restarts"] == 2
    project.assert_clean(result.run_id)


BLOCKING = """
import os, time, pytest
from pathlib import Path

@pytest.mark.requires("db")
def test_blocks():
    Path({marker!r}).touch()
    time.sleep(600)
"""


@needs_redis
@pytest.mark.parametrize("how", ["sigkill", "ctrl-c"])
def test_nothing_is_left_when_testpool_is_killed_while_services_run(
    project: Project, tmp_path: Path, how: str
) -> None:
    marker = tmp_path / "blocking"
    project.write("tests/test_block.py", BLOCKING.format(marker=str(marker)))
    project.config(
        workers=2,
        services={"db": REDIS_SERVICE, "mock": mock_service(depends_on=["db"])},
        server_requires=["mock"],
    )
    process = project.popen()
    wait_until(
        lambda: marker.exists() or process.poll() is not None, timeout=90, what="the test to start"
    )
    assert marker.exists(), process.communicate()
    run_id = str(record_of(project)["run_id"])
    record = record_of(project)
    services = [p for p in record["processes"] if p["what"].startswith("service ")]
    assert sorted(p["what"] for p in services) == ["service db", "service mock"]
    assert processes_of(run_id, "redis-server") and processes_of(run_id, str(MOCK))

    if how == "sigkill":
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    else:
        send_ctrl_c(process)
        process.communicate(timeout=60)
        assert process.returncode == 130

    project.assert_clean(run_id)
    assert not processes_of(run_id, "redis-server")


def test_service_logs_are_redacted(project: Project) -> None:
    project.write(".env.secrets", "SECRET_TOKEN=hunter2-very-secret\n")
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(
        secrets=[".env.secrets"], services={"mock": mock_service()}, server_requires=["mock"]
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.report is not None
    log = (project.root / result.report["services"][0]["log"]).read_text()
    assert "mockservice sees SECRET_TOKEN=[secret]" in log
    assert "hunter2" not in log
    project.assert_clean(result.run_id)


def test_class_and_module_markers_count(project: Project) -> None:
    project.write(
        "tests/test_marked.py",
        """
        import os
        import pytest

        pytestmark = pytest.mark.requires("mock")

        def test_module_level():
            assert os.environ["MOCK_URL"]

        @pytest.mark.requires("other")
        class TestClassLevel:
            def test_both(self):
                assert os.environ["MOCK_URL"] and os.environ["OTHER_URL"]
        """,
    )
    project.config(services={"mock": mock_service(), "other": mock_service()})

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.report is not None
    assert {s["name"] for s in result.report["services"]} == {"mock", "other"}
    project.assert_clean(result.run_id)


def test_process_probes_and_start_timeouts(project: Project) -> None:
    project.write(
        "tests/test_a.py",
        """
        import pytest

        @pytest.mark.requires("ticker")
        def test_a():
            pass
        """,
    )
    sleeper = "{python} -c 'import time; time.sleep(600)'"
    project.config(services={"ticker": {"command": sleeper, "probe": {"process": 0.3}}})
    ok = project.run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.report is not None
    (ticker,) = ok.report["services"]
    assert ticker["port"] is None and ticker["ready"] >= 0.3

    # A process probe fails when the service exits before its time is up ...
    project.config(services={"ticker": {"command": "echo going; exit 5", "probe": {"process": 5}}})
    early = project.run("--full")
    assert early.returncode == 3
    assert early.stderr.startswith(
        "testpool: error: service ticker failed to start: it exited with status 5 within 5 s; "
        "command: echo going; exit 5\n"
    ), early.stderr
    assert "  going" in early.stderr

    # ... and a service whose port never opens fails at its startup_timeout.
    project.config(services={"ticker": {"command": sleeper, "port": "auto", "startup_timeout": 1}})
    late = project.run("--full")
    assert late.returncode == 3
    assert late.report is not None
    assert "service ticker failed to start: not ready after 1 s (tcp 127.0.0.1:" in late.stderr
    assert "ConnectionRefusedError" in late.stderr
    project.assert_clean(ok.run_id, early.run_id, late.run_id)


def test_a_taken_worker_port_is_found_before_any_service_starts(
    project: Project, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(
        services={"mock": mock_service(env={"STARTS_FILE": str(starts)})},
        server_requires=["mock"],
    )
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past runs' TIME_WAIT
        holder.bind(("127.0.0.1", project.port_base))
        holder.listen()
        result = project.run()

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"worker port(s) already in use: {project.port_base}" in result.stderr
    assert not starts.exists()
    project.assert_clean(result.run_id)


def test_service_placeholders_fill_with_the_workers_in_files_env_and_health_path(
    project: Project,
) -> None:
    # The two kinds of placeholders together: a worker's ({port}, {base_url}) and the run's
    # services' ({services.mock.port}), in one files template, one env value and the health
    # path; the template is rendered again on every re-seed (isolation = "test").
    project.write(
        "app.ini.in",
        "port = {port}\nmock = {services.mock.url}\nliteral = {{services.mock.port}}\n",
    )
    project.write(
        "tests/test_a.py",
        """
        import os, pathlib, httpx, pytest

        @pytest.mark.parametrize("n", range(4))
        def test_sees_its_values(n):
            ini = pathlib.Path(os.environ["DATA_DIR"], "app.ini").read_text()
            assert ini == (
                "port = " + os.environ["PORT"] + "\\nmock = " + os.environ["MOCK_URL"]
                + "\\nliteral = {services.mock.port}\\n"
            )
            pathlib.Path(os.environ["DATA_DIR"], "app.ini").write_text("spoilt")
            assert os.environ["BOTH"] == os.environ["TEST_BASE_URL"] + "|" + os.environ["MOCK_PORT"]
            assert httpx.get(os.environ["MOCK_URL"] + "/health").status_code == 200
        """,
    )
    project.config(
        workers=2,
        isolation="test",
        files={"app.ini": "app.ini.in"},
        env={"BOTH": "{base_url}|{services.mock.port}"},
        health_path="/health?mock={services.mock.port}",
        services={"mock": mock_service()},
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}, result.statuses
    assert result.report is not None
    port = result.report["services"][0]["port"]
    # No test requires the mock: the server does (its health path, env and files name it).
    assert f"services: mock (port {port})" in result.stdout
    assert f"GET /health?mock={port}" in project.worker_log(result, 0).read_text()
    project.assert_clean(result.run_id)
