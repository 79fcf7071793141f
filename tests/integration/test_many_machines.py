"""One suite over several machines: static shards merged afterwards, and a Redis queue shared
by several testpool processes (each its own "machine": own ports, results and cache), with a
real redis-server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from browser import page_data
from support import Project, allocate_ports, wait_until

SLEEPY = """
import os, httpx

def test_{n}():
    assert httpx.get(os.environ["TEST_BASE_URL"] + "/sleep?ms={ms}").status_code == 200
"""

FLAKY_ONCE = """
import os
from pathlib import Path

def test_fails_the_first_time():
    marker = Path({marker!r})
    if not marker.exists():
        marker.touch()
        assert False, "first attempt fails"
"""


def _suite(project: Project, count: int, ms: int = 100) -> list[str]:
    for n in range(count):
        project.write(f"tests/test_s{n:02d}.py", SLEEPY.format(n=n, ms=ms + 20 * (n % 5)))
    return [f"tests/test_s{n:02d}.py::test_{n}" for n in range(count)]


def _report(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "report.json").read_text()))


# --- static shards -----------------------------------------------------------------------------


def test_shards_cover_the_suite_once_and_merge_into_one_report(project: Project) -> None:
    ids = _suite(project, 10)
    project.config(workers=2)
    assert project.run().returncode == 0  # records durations: the split uses them
    cache = (project.root / ".test-cache.json").read_bytes()

    parts = []
    for index in (1, 2, 3):
        # Each CI job starts from the same cache file (restored), not from another's.
        (project.root / ".test-cache.json").write_bytes(cache)
        result = project.run("--full", "--shard", f"{index}/3")
        assert result.returncode == 0, result.stdout + result.stderr
        folder = project.root / f"shard-{index}"
        shutil.copytree(
            project.root / "test-results", folder, ignore=shutil.ignore_patterns("logs")
        )
        parts.append(_report(folder))
        project.assert_clean(result.run_id)
    ran = [t["id"] for part in parts for t in part["tests"]]
    assert sorted(ran) == sorted(ids), "every test in exactly one shard"
    assert {p["part"]["index"] for p in parts} == {1, 2, 3}
    assert all(p["part"]["suite"] == 10 for p in parts)

    merged = project.run("merge-reports", "shard-1", "shard-2", "shard-3", "-o", "merged")

    assert merged.returncode == 0, merged.stdout + merged.stderr
    report = _report(project.root / "merged")
    assert sorted(t["id"] for t in report["tests"]) == sorted(ids)
    assert {t["origin"] for t in report["tests"]} == {"shard 1/3", "shard 2/3", "shard 3/3"}
    cases = ET.parse(project.root / "merged" / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == 10


def test_the_split_is_the_same_on_every_machine_with_the_same_cache(project: Project) -> None:
    _suite(project, 9)
    project.config(workers=1)
    assert project.run().returncode == 0
    cache = (project.root / ".test-cache.json").read_bytes()

    def split(where: Project) -> list[list[str]]:
        parts = []
        for i in (1, 2):
            (where.root / ".test-cache.json").write_bytes(cache)
            report = where.run("--full", "--shard", f"{i}/2").report
            assert report is not None
            parts.append(sorted(t["id"] for t in report["tests"]))
        return parts

    first = split(project)
    # Another machine: the same checkout and cache file, another folder.
    other = Project.create(project.root.parent / "other")
    shutil.copytree(project.root / "tests", other.root / "tests")
    other.config(workers=1)
    second = split(other)
    assert first == second
    assert sorted(first[0] + first[1]) == sorted(set(first[0] + first[1]))
    other.assert_clean()


def test_a_missing_shard_makes_the_merged_report_fail(project: Project) -> None:
    _suite(project, 4)
    project.config()
    for index in (1, 3):
        assert project.run("--shard", f"{index}/3").returncode == 0
        shutil.copytree(project.root / "test-results", project.root / f"shard-{index}")

    merged = project.run("merge-reports", "shard-1", "shard-3", "-o", "merged")

    assert merged.returncode == 1
    assert "shard(s) 2/3 missing" in merged.stderr
    assert len(merged.stderr.strip().splitlines()) == 1, merged.stderr


def test_bad_shard_is_one_line_exit_2(project: Project) -> None:
    _suite(project, 1)
    project.config()
    for bad in ("4/3", "x", "0/2"):
        result = project.run("--shard", bad)
        assert result.returncode == 2, result.stderr
        assert "--shard" in result.stderr and "Traceback" not in result.stderr


MOCK = Path(__file__).resolve().parents[1] / "fixtures" / "mockservice.py"
MOCK_SERVICE = {
    "command": f"{{python}} {MOCK}",
    "port": "auto",
    "probe": {"http": "http://127.0.0.1:{port}/health"},
}
USES_MOCK = """
import os, httpx, pytest

@pytest.mark.requires("mock")
@pytest.mark.parametrize("n", range({count}))
def test_mock(n):
    assert httpx.get(os.environ["MOCK_URL"] + "/health").status_code == 200
"""
SMOKE = """
def test_smoke_ok():
    pass

def test_smoke_fails():
    assert False, "smoke failed"
"""


def test_shards_run_their_own_phases_and_services_and_merge(project: Project) -> None:
    project.write("tests/smoke/test_smoke.py", SMOKE)
    project.write("tests/test_main.py", USES_MOCK.format(count=6))
    project.config(
        workers=2,
        services={"mock": MOCK_SERVICE},
        phases=[{"name": "smoke", "select": ["tests/smoke/*"], "required": True}],
    )
    failing = "tests/smoke/test_smoke.py::test_smoke_fails"

    reports = {}
    for index in (1, 2):
        # Each CI job starts from the same cache (here: none), so they split alike.
        (project.root / ".test-cache.json").unlink(missing_ok=True)
        result = project.run("--shard", f"{index}/2")
        folder = project.root / f"shard-{index}"
        shutil.copytree(project.root / "test-results", folder)
        reports[index] = _report(folder)
        statuses = result.statuses
        main = {t: s for t, s in statuses.items() if t.startswith("tests/test_main.py")}
        if failing in statuses:
            # Its required phase failed: the rest of this shard does not run ...
            assert result.returncode == 1, result.stdout + result.stderr
            assert main and set(main.values()) == {"not run"}, statuses
            messages = {t["message"] for t in reports[index]["tests"] if t["id"] in main}
            assert messages == {"not run: required phase 'smoke' failed"}
        else:
            # ... and only of this shard.
            assert result.returncode == 0, result.stdout + result.stderr
            assert set(main.values()) == {"passed"}, statuses
        # Each shard starts the services its own tests need.
        assert [s["name"] for s in reports[index]["services"]] == ["mock"]
        project.assert_clean(result.run_id)

    merged = project.run("merge-reports", "shard-1", "shard-2", "-o", "merged")

    assert merged.returncode == 1, merged.stdout + merged.stderr
    report = _report(project.root / "merged")
    assert [(p["name"], p["outcome"], p["tests"]) for p in report["phases"]] == [
        ("smoke", "failed", 2),
        ("other", "stopped", 6),
    ]
    assert {t["phase"] for t in report["tests"]} == {"smoke", "other"}
    assert sorted(s["origin"] for s in report["services"]) == ["shard 1/2", "shard 2/2"]
    suites = ET.parse(project.root / "merged" / "junit.xml").getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        ("smoke", "2", "1"),
        ("other", "6", "0"),
    ]


# --- the Redis queue ------------------------------------------------------------------------------


def _machines(project: Project, count: int, **keys: Any) -> list[str]:
    """``count`` config files, each its own machine: ports, results folder and cache file."""
    names = []
    for n in range(count):
        name = f"machine-{n}.toml"
        project.config(
            config_file=name,
            port_base=project.port_base if n == 0 else allocate_ports(),
            results_dir=f"results-{n}",
            cache_file=f"cache-{n}.json",
            **keys,
        )
        names.append(name)
    return names


def _queue(redis_url: str, build: str, *extra: str) -> list[str]:
    return ["--queue", redis_url, "--build", build, *extra]


def _popen(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        project.command(*args), cwd=project.root, env=project.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _results_by(redis_url: str, build: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        details = client.hgetall(f"testpool:{{{build}}}:detail")
    finally:
        client.close()
    return {str(t): json.loads(raw).get("origin", "") for t, raw in details.items()}


def _finish(
    process: subprocess.Popen[str], timeout: float, redis_url: str, build: str
) -> tuple[str, str]:
    """Wait for a machine; if it hangs, say what the build's queue holds before failing."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import redis

        client = redis.Redis.from_url(redis_url, decode_responses=True)
        names = ("pending", "holder", "results", "meta")
        where: dict[str, Any] = {
            name: client.lrange(f"testpool:{{{build}}}:{name}", 0, -1)
            if name == "pending"
            else client.hgetall(f"testpool:{{{build}}}:{name}")
            for name in names
        }
        where["leases"] = client.zrange(f"testpool:{{{build}}}:leases", 0, -1, withscores=True)
        client.close()
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"a machine hung:\n{where}\n{stdout[-3000:]}\n{stderr[-2000:]}"
        ) from None


def _held_by(redis_url: str, build: str, machine_suffix: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        holders = client.hgetall(f"testpool:{{{build}}}:holder")
    finally:
        client.close()
    return [str(t) for t, who in holders.items() if str(who).endswith(machine_suffix)]


def test_three_machines_share_a_build_and_one_is_killed(
    project: Project, redis_url: str, tmp_path: Path
) -> None:
    ids = _suite(project, 24, ms=300)
    project.write("tests/test_flaky.py", FLAKY_ONCE.format(marker=str(tmp_path / "failed-once")))
    ids.append("tests/test_flaky.py::test_fails_the_first_time")
    configs = _machines(project, 3, workers=2)
    queue = _queue(redis_url, "build-1", "--lease-timeout", "2", "--retries", "1")
    # The machine to be killed starts first, so that it surely holds tests when it dies.
    victim = _popen(project, "--config", configs[2], *queue)
    mine = f"(pid {victim.pid})"
    wait_until(
        lambda: _held_by(redis_url, "build-1", mine),
        timeout=120,
        what="the first machine to hold a test",
    )
    machines = [_popen(project, "--config", name, *queue) for name in configs[:2]]
    try:
        wait_until(
            lambda: any(
                o and not o.endswith(mine) for o in _results_by(redis_url, "build-1").values()
            ),
            timeout=120,
            what="another machine to record a result",
        )
    except AssertionError as error:
        for process in [victim, *machines]:
            process.kill()
        outputs = [p.communicate() for p in [victim, *machines]]
        raise AssertionError(f"{error}: {outputs}") from None

    os.kill(victim.pid, signal.SIGKILL)
    held = _held_by(redis_url, "build-1", mine)
    victim.wait(timeout=30)
    outputs = [_finish(m, 300, redis_url, "build-1") for m in machines]

    assert [m.returncode for m in machines] == [0, 0], outputs
    report = project.run("report", *_queue(redis_url, "build-1"), "-o", "build-report")
    assert report.returncode == 0, report.stdout + report.stderr
    tests = _report(project.root / "build-report")["tests"]
    assert sorted(t["id"] for t in tests) == sorted(ids), "every test exactly once"
    statuses = {t["id"]: t["status"] for t in tests}
    assert statuses.pop("tests/test_flaky.py::test_fails_the_first_time") == "flaky"
    assert set(statuses.values()) == {"passed"}
    origins = {t["origin"] for t in tests}
    assert len(origins) >= 2
    # The build's report.html: a group of timeline lanes per machine that ran something.
    page = page_data(project.root / "build-report" / "report.html")
    lane_origins = {lane["origin"] for lane in page["lanes"]}
    assert origins <= lane_origins <= origins | {o for o in lane_origins if o.endswith(mine)}
    [flaky] = [a for i, a in page["failures"].items() if page["tests"][int(i)][1] == "flaky"]
    assert [a["status"] for a in flaky] == ["failed", "passed"]
    # Whatever the killed machine held came back through an expired lease.
    lost = [a for t in tests for a in t["attempts"] if "stopped renewing the lease" in a["message"]]
    assert lost and all(a["origin"].endswith(mine) for a in lost)
    lost_tests = {t["id"] for t in tests if any(a in lost for a in t["attempts"])}
    assert set(held) <= lost_tests, "each test it held came back after its lease ran out"
    # Results flow into each surviving machine's cache.
    for n in (0, 1):
        cache = json.loads((project.root / f"cache-{n}.json").read_text())
        assert set(ids) <= set(cache["tests"]), f"machine {n} learned every result"
    project.assert_clean()


def test_retry_goes_to_another_machine_where_there_is_one(
    project: Project, redis_url: str, tmp_path: Path
) -> None:
    project.write("tests/test_flaky.py", FLAKY_ONCE.format(marker=str(tmp_path / "failed-once")))
    _suite(project, 6, ms=200)
    configs = _machines(project, 2, workers=1)
    queue = _queue(redis_url, "build-retry", "--retries", "2")
    machines = [_popen(project, "--config", name, *queue) for name in configs]
    for machine in machines:
        machine.communicate(timeout=300)

    report = project.run("report", *_queue(redis_url, "build-retry"), "-o", "build-report")

    assert report.returncode == 0, report.stdout + report.stderr
    flaky = next(t for t in _report(project.root / "build-report")["tests"] if "flaky" in t["id"])
    assert flaky["status"] == "flaky"
    first, second = flaky["attempts"][:2]
    assert first["status"] == "failed" and second["status"] == "passed"
    assert first["origin"] != second["origin"], "the retry went to the other machine"
    project.assert_clean()


def test_redis_unreachable_is_one_line_exit_3(project: Project) -> None:
    _suite(project, 1)
    project.config()
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed

    result = project.run(*_queue(f"redis://127.0.0.1:{port}/0", "b"))

    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith("testpool: error: cannot reach Redis")
    assert len(result.stderr.strip().splitlines()) == 1
    project.assert_clean()


def test_a_reused_build_id_is_an_error_unless_resume(project: Project, redis_url: str) -> None:
    _suite(project, 3)
    project.config()
    assert project.run(*_queue(redis_url, "again")).returncode == 0

    reused = project.run("--full", *_queue(redis_url, "again"))
    assert reused.returncode == 2
    assert "already finished" in reused.stderr and "--resume" in reused.stderr

    resumed = project.run("--full", *_queue(redis_url, "again", "--resume"))
    assert resumed.returncode == 0, resumed.stderr

    _suite(project, 5)  # other tests, same build id
    other = project.run(*_queue(redis_url, "again"))
    assert other.returncode == 2
    assert "another set of tests" in other.stderr
    project.assert_clean()


def test_redis_lost_mid_run_stops_taking_tests_and_exits_3(
    project: Project, redis_url: str
) -> None:
    _suite(project, 30, ms=300)
    project.config(workers=2)
    machine = _popen(project, *_queue(redis_url, "lost", "--lease-timeout", "3"))
    wait_until(lambda: _results_by(redis_url, "lost"), timeout=120, what="a first result")
    redis_pid = next(
        c.pid
        for c in __import__("psutil").net_connections("inet")
        if c.laddr
        and c.laddr.port == int(redis_url.rsplit(":", 1)[1].split("/")[0])
        and c.status == "LISTEN"
    )

    os.kill(redis_pid, signal.SIGKILL)
    stdout, stderr = machine.communicate(timeout=120)

    assert machine.returncode == 3, stdout + stderr
    assert "lost the connection to Redis" in stderr
    report = json.loads((project.root / "test-results" / "report.json").read_text())
    assert 0 < len(report["tests"]) < 30, "it reports what it ran, and stopped taking tests"
    project.assert_clean()


def test_ctrl_c_gives_the_tests_it_held_back_to_the_queue(project: Project, redis_url: str) -> None:
    import redis

    _suite(project, 12, ms=400)
    project.config(workers=2)
    machine = _popen(project, *_queue(redis_url, "interrupted", "--lease-timeout", "60"))
    wait_until(
        lambda: _held_by(redis_url, "interrupted", f"(pid {machine.pid})"),
        timeout=120,
        what="the machine to hold a test",
    )

    os.killpg(machine.pid, signal.SIGINT)
    machine.communicate(timeout=60)

    assert machine.returncode == 130
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = {n: f"testpool:{{interrupted}}:{n}" for n in ("holder", "leases", "pending")}
        assert client.hlen(keys["holder"]) == 0 and client.zcard(keys["leases"]) == 0
        results = client.hlen("testpool:{interrupted}:results")
        assert client.llen(keys["pending"]) + results == 12, "nothing lost, nothing held"
    finally:
        client.close()
    project.assert_clean()


def test_report_waits_for_a_build_that_has_not_started_yet(
    project: Project, redis_url: str
) -> None:
    _suite(project, 3)
    project.config()
    report = _popen(project, "report", *_queue(redis_url, "later"), "-o", "build-report")

    assert project.run(*_queue(redis_url, "later")).returncode == 0
    stdout, stderr = report.communicate(timeout=120)

    assert report.returncode == 0, stdout + stderr
    assert len(_report(project.root / "build-report")["tests"]) == 3
    nobody = project.run("report", *_queue(redis_url, "never"), "--timeout", "1")
    assert nobody.returncode == 3
    assert "no machine started build never" in nobody.stderr
    project.assert_clean()


def test_phases_with_a_queue_are_refused_with_one_line(project: Project) -> None:
    _suite(project, 2)
    project.config(phases=[{"name": "smoke", "select": ["tests/test_s00.py::*"]}])

    # Refused before Redis is reached: nothing listens on port 1.
    result = project.run(*_queue("redis://127.0.0.1:1/0", "phased"))

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "testpool: error: phases are not supported with --queue yet; use --shard or drop --queue"
    )
    project.assert_clean()


def test_queue_machines_start_the_services_their_tests_need(
    project: Project, redis_url: str
) -> None:
    project.write("tests/test_main.py", USES_MOCK.format(count=8))
    project.write("tests/test_plain.py", "def test_plain():\n    pass\n")
    configs = _machines(project, 2, workers=2, services={"mock": MOCK_SERVICE})
    # The second machine's service differs (another cache input, "services"): the build's
    # tests are the same ids, so it joins rather than refusing "another set of tests".
    project.config(
        config_file=configs[1],
        port_base=allocate_ports(),
        results_dir="results-1",
        cache_file="cache-1.json",
        workers=2,
        services={"mock": {**MOCK_SERVICE, "env": {"OTHER": "1"}}},
    )
    queue = _queue(redis_url, "build-services")
    machines = [_popen(project, "--config", name, *queue) for name in configs]
    outputs = [machine.communicate(timeout=300) for machine in machines]

    assert [m.returncode for m in machines] == [0, 0], outputs
    report = project.run("report", *queue, "-o", "build-report")
    assert report.returncode == 0, report.stdout + report.stderr
    tests = _report(project.root / "build-report")["tests"]
    assert len(tests) == 9 and {t["status"] for t in tests} == {"passed"}
    for n in (0, 1):
        mine = _report(project.root / f"results-{n}")
        if mine["tests"]:  # a machine that ran tests had the service they need
            assert [s["name"] for s in mine["services"]] == ["mock"]
    project.assert_clean()


def test_a_queued_copy_of_a_test_that_has_its_result_is_not_handed_out(redis_url: str) -> None:
    # A lease ran out while its holder went on, and the holder then recorded the result: the
    # copy that went back on the queue must not run again anywhere.
    import redis

    from testpool.distributed import KEYS, LEASE, SEED, keys_of

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = keys_of("skip")
    try:
        client.eval(
            SEED, len(KEYS), *keys.values(),
            "digest", 2, 0, 0, 30000, "m1", 3600, 2, "a", "b", 0, 2, "a", "f.py", "b", "f.py",
        )  # fmt: skip
        client.hset(keys["results"], "a", "passed")

        leased = client.eval(LEASE, len(KEYS), *keys.values(), "m2", 30000, 16, 3, 3600, "{}")

        assert leased[0] == "b"
        assert client.llen(keys["pending"]) == 0
    finally:
        client.close()
