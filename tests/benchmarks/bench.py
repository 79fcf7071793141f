"""testpool's benchmark: real testpool, real tmux, real dev servers, ratios measured side by side.

    python tests/benchmarks/bench.py [--runs 3] [--only scaling,overhead,alternatives,cache,startup,breakdown,autoworkers,machines,watch]

(`just bench` runs it.) Every figure is the median of ``--runs`` runs. The machine is noisy:
compare the ratios printed in one run, not absolute seconds across machines.

Sections:
1. scaling: a synthetic I/O-bound suite (64 tests, each waiting 250 ms on its worker's server —
   a stand-in for page renders or scrapes) at 1, 2, 4 and 8 workers, wall time of the whole
   `testpool` command. Efficiency = ideal / actual, with the limit from the issue: ideal = (time
   from invoking testpool until its slowest worker can take a test) + 64 x 0.25 s / N. A strict
   efficiency uses the 1-worker start-up instead (as if N workers started as fast as one).
2. overhead: 200 trivial tests (one GET each) at 4 workers, in the fast (session) and the
   one-process-per-test pytest modes: the time between one test's body ending and the next
   test's body starting on the same worker (median, p95), and wall time per test.
3. alternatives: the same synthetic suite with plain sequential pytest against one server, and
   with pytest-xdist -n N where a session fixture starts one server per xdist worker.
4. cache: a fully cached re-run of a generated 1,000-test suite, and hashing 10,000 small files.
5. start-up: time until N workers are healthy (N = 1, 4, 8), through testpool's pool, for a
   server whose start is CPU-bound (Python's http.server, ~50 ms) and for one that first waits
   0.5 s (as a server waiting on a database or a compiler would).
5b. start-up breakdown: where the time until the first test starts goes (report.json's
   ``startup``), on the bundled 128-test example suite and a synthetic 1,200-test one (60
   files, each spending ~10 ms at import as modules importing page objects do), every test
   or one file's, with the zygote collecting only what runs first
   ("early") and collecting the whole suite first (TESTPOOL_EARLY_START=0), runs alternating;
   and the whole run's wall time both ways.
5c. workers = "auto": the count it picks, and the wall time at 1, 2, 4 and 8 workers, for a
   server that burns ~1 s of CPU before it listens and for a cheap one (~50 ms).
6. machines: --queue (Redis) against --shard on simulated machines (needs redis-server).
7. watch: a real `testpool --watch` (4 workers, default session mode); real edits of files, and
   the time from each write to the first rerun test's start (as testpool records it in
   report.json; for the synthetic suite also the moment the test's body began), for: a test
   module (synthetic 120-test suite, and the example suite e2e/), the example's conftest.py (a
   new zygote collects the suite) and its server's source (the servers restart). A test module
   is measured both ways of bringing the workers' code up to date: re-imported in each worker
   (the default) and every worker forked anew from the zygote (TESTPOOL_WATCH_REFORK=1, a
   switch kept for this comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
from portlock import claim

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SYNTHETIC_TESTS = 64
SYNTHETIC_WAIT = 0.25
TRIVIAL_TESTS = 200

SERVER = """
import os, signal, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive + two small writes = a 40 ms delayed ACK
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/sleep":
            time.sleep(int(parse_qs(url.query)["ms"][0]) / 1000)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

time.sleep(float(os.environ.get("BENCH_STARTUP_WAIT", "0")))  # e.g. waiting on a database
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))  # stop at once: nothing to flush
print("listening", flush=True)
server.serve_forever()
"""

# Shared by testpool and the do-it-yourself runs: under testpool the worker's server is used;
# otherwise a session fixture starts one server per pytest(-xdist) worker and polls it.
CONFTEST = """
import os, subprocess, sys, tempfile, time
import httpx, pytest

DIY_PORT_BASE = int(os.environ.get("BENCH_DIY_PORT_BASE", "0"))

@pytest.fixture(scope="session")
def base_url():
    if "TEST_BASE_URL" in os.environ:
        yield os.environ["TEST_BASE_URL"]
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    port = DIY_PORT_BASE + int(worker[2:])
    data = tempfile.mkdtemp(prefix="bench-diy-")
    env = {**os.environ, "PORT": str(port), "DATA_DIR": data}
    server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "..", "server.py")],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    yield url
    server.terminate()
    server.wait()

@pytest.fixture(scope="session")
def http(base_url):
    with httpx.Client(base_url=base_url, trust_env=False) as client:
        yield client
"""

SYNTHETIC_TEST = """
def test_render_{n}(http):
    assert http.get("/sleep?ms={ms}").status_code == 200
"""

TRIVIAL_HEADER = "import os, time\n"
TRIVIAL_TEST = """
def test_ping_{n}(http):
    start = time.time()
    assert http.get("/ping").status_code == 200
    end = time.time()
    with open(os.environ["BENCH_TIMES"] + "/" + os.environ.get("TESTPOOL_WORKER", "x"), "a") as out:
        out.write(f"{{start}} {{end}}\\n")
"""


def free_port_block(count: int = 8, start: int = 31000) -> int:
    """Ports no other process of ours holds (tests, another benchmark: see tests/portlock.py)."""
    base = start
    while not claim(base, count):
        base += count
    return base


class Project:
    def __init__(self, root: Path, name: str, port_start: int = 31000) -> None:
        self.root = root / name
        self.tests = self.root / "tests"
        self.tests.mkdir(parents=True)
        (self.root / "server.py").write_text(SERVER)
        (self.tests / "conftest.py").write_text(CONFTEST)
        (self.root / "pytest.ini").write_text("[pytest]\n")
        # Other benchmarks may run at once on a shared machine: sections keep apart.
        self.port_base = free_port_block(start=port_start)
        self.tmp = root / f"{name}-tmp"
        self.tmp.mkdir()
        self.launched_unix = 0.0

    def config(self, **extra: Any) -> None:
        lines = [
            'server = "{python} server.py"',
            'tests = "tests"',
            f"port_base = {self.port_base}",
            *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        ]
        (self.root / "testpool.toml").write_text("\n".join(lines) + "\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTPOOL_", "PYTEST_"))}
        env.update(TMPDIR=str(self.tmp), TESTPOOL_STATE_DIR=str(self.root / ".state"), NO_COLOR="1")
        env.update(extra)
        return env

    def testpool(
        self, *args: str, env: dict[str, str] | None = None
    ) -> tuple[float, dict[str, Any]]:
        self.launched_unix = time.time()
        started = time.perf_counter()
        done = subprocess.run(
            [PYTHON, "-m", "testpool", *args], cwd=self.root, env=env or self.env(),
            capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"testpool failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr}"
            )
        report = json.loads((self.root / "test-results" / "report.json").read_text())
        return wall, report

    def list_tests(self) -> None:
        """`testpool list`: collects once, so every measured run starts from the same cache."""
        subprocess.run(
            [PYTHON, "-m", "testpool", "list"],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            check=True,
        )

    def pytest(self, *args: str) -> float:
        env = self.env(BENCH_DIY_PORT_BASE=str(free_port_block(start=36000)))
        started = time.perf_counter()
        done = subprocess.run(
            [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", *args],
            cwd=self.root, env=env, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"pytest failed:\n{done.stdout[-2000:]}")
        return wall


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- 1 + 3: scaling and the alternatives ----------------------------------------------------


def synthetic(root: Path) -> Project:
    project = Project(root, "synthetic")
    body = "".join(
        SYNTHETIC_TEST.format(n=n, ms=int(SYNTHETIC_WAIT * 1000)) for n in range(SYNTHETIC_TESTS)
    )
    for part in range(4):  # four files, as a real suite would have
        chunk = body.split("\ndef ")[1 + part * 16 : 1 + (part + 1) * 16]
        (project.tests / f"test_pages_{part}.py").write_text("".join("\ndef " + c for c in chunk))
    project.config()
    return project


def bench_scaling(root: Path, runs: int, results: dict[str, Any]) -> None:
    project = synthetic(root)
    project.list_tests()
    work = SYNTHETIC_TESTS * SYNTHETIC_WAIT
    walls: dict[int, float] = {}
    ready: dict[int, float] = {}
    for workers in (1, 2, 4, 8):
        samples, readies = [], []
        for _ in range(runs):
            wall, report = project.testpool("--full", "--workers", str(workers))
            samples.append(wall)
            # From the moment testpool was invoked until its last worker could take a test.
            since_launch = report["started_unix"] - project.launched_unix
            readies.append(since_launch + max(w["ready"] for w in report["workers_detail"]))
        walls[workers] = statistics.median(samples)
        ready[workers] = statistics.median(readies)
    one_ready = ready[1]
    rows = []
    for workers, wall in walls.items():
        ideal = ready[workers] + work / workers  # the limit: slowest start-up + work / N
        strict = one_ready + work / workers  # as if N workers started as fast as one
        rows.append(
            {
                "workers": workers,
                "wall": wall,
                "speedup": walls[1] / wall,
                "ready": ready[workers],
                "ideal": ideal,
                "efficiency": ideal / wall,
                "strict_efficiency": strict / wall,
            }
        )
    results["scaling"] = {"rows": rows, "one_worker_ready": one_ready, "work": work}
    results["_synthetic"] = project


def bench_alternatives(root: Path, runs: int, results: dict[str, Any]) -> None:
    project: Project = results.get("_synthetic") or synthetic(root)
    sequential = median_of(runs, project.pytest)
    xdist = {n: median_of(runs, lambda n=n: project.pytest("-n", str(n))) for n in (4, 8)}
    scaling = {row["workers"]: row["wall"] for row in results.get("scaling", {}).get("rows", [])}
    mine = {}
    for n in (4, 8):
        mine[n] = scaling.get(n) or median_of(
            runs, lambda n=n: project.testpool("--full", "--workers", str(n))[0]
        )
    results["alternatives"] = {
        "sequential": sequential,
        "xdist": xdist,
        "testpool": mine,
        "ratio": {n: mine[n] / xdist[n] for n in (4, 8)},
    }


# --- 2: per-test overhead ---------------------------------------------------------------------


def bench_overhead(root: Path, runs: int, results: dict[str, Any]) -> None:
    project = Project(root, "trivial")
    per_file = TRIVIAL_TESTS // 10
    for part in range(10):
        body = "".join(TRIVIAL_TEST.format(n=part * per_file + n) for n in range(per_file))
        (project.tests / f"test_ping_{part}.py").write_text(TRIVIAL_HEADER + body)
    out: dict[str, Any] = {}
    for mode in ("session", "process"):
        project.config(workers=4, pytest_mode=mode)
        project.list_tests()
        gaps: list[float] = []
        walls: list[float] = []
        for _ in range(runs):
            times = Path(tempfile.mkdtemp(prefix="bench-times-"))
            wall, _report = project.testpool("--full", env=project.env(BENCH_TIMES=str(times)))
            walls.append(wall)
            for worker_file in times.iterdir():
                spans = sorted(
                    tuple(map(float, line.split())) for line in worker_file.read_text().splitlines()
                )
                gaps += [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)]
            shutil.rmtree(times)
        wall = statistics.median(walls)
        out[mode] = {
            "median_ms": statistics.median(gaps) * 1000,
            "p95_ms": percentile(gaps, 0.95) * 1000,
            "wall": wall,
            "per_test_ms": wall * 4 / TRIVIAL_TESTS * 1000,
        }
    results["overhead"] = out


# --- 4: cache -----------------------------------------------------------------------------------


def bench_cache(root: Path, runs: int, results: dict[str, Any]) -> None:
    project = Project(root, "thousand")
    for part in range(50):
        (project.tests / f"test_bulk_{part:02d}.py").write_text(
            "".join(f"def test_{n}():\n    pass\n\n" for n in range(20))
        )
    project.config(workers=8)
    project.testpool()
    samples = []
    for _ in range(runs):
        wall, report = project.testpool()
        assert report["workers"] == 0 and report["counts"]["cached"] == 1000, report["counts"]
        samples.append(wall)
    tree = root / "ten-thousand"
    for folder in range(100):
        (tree / f"d{folder:03d}").mkdir(parents=True)
        for index in range(100):
            (tree / f"d{folder:03d}" / f"f{index:03d}.py").write_text(
                f"# file {folder}/{index}\n" * 8
            )
    from testpool.hashing import FileHasher

    def hash_once() -> float:
        started = time.perf_counter()
        FileHasher(tree).tree(tree)
        return time.perf_counter() - started

    results["cache"] = {
        "cached_1000": statistics.median(samples),
        "hash_10000": median_of(runs, hash_once),
    }


# --- 5: start-up ----------------------------------------------------------------------------------


def bench_startup(root: Path, runs: int, results: dict[str, Any]) -> None:
    from testpool.config import parse_config
    from testpool.pool import Pool, PoolSettings
    from testpool.secrets import Redactor

    project = Project(root, "startup")

    async def once(count: int, wait: float) -> float:
        config = parse_config(
            {
                "server": "{python} server.py",
                "tests": "tests",
                "port_base": project.port_base,
                "env": {"BENCH_STARTUP_WAIT": str(wait)},
            },
            root=project.root, source=project.root / "testpool.toml",
        )  # fmt: skip
        scratch = Path(tempfile.mkdtemp(prefix="bench-scratch-"))
        pool = Pool(
            PoolSettings(
                config, f"bench{os.getpid()}x{count}", {}, Redactor([]), scratch, scratch / "logs"
            )
        )
        started = time.perf_counter()
        try:
            workers = pool.launch(count)
            await asyncio.gather(*(pool.wait_ready(w) for w in workers))
            return time.perf_counter() - started
        finally:
            await pool.shutdown()
            shutil.rmtree(scratch)

    out = {}
    for label, wait in (("cpu", 0.0), ("io", 0.5)):
        timings = {
            n: median_of(runs, lambda n=n, wait=wait: asyncio.run(once(n, wait))) for n in (1, 4, 8)
        }
        out[label] = {"healthy": timings, "ratio_8_to_1": timings[8] / timings[1]}
    results["startup"] = out


# --- 5b: start-up breakdown --------------------------------------------------------------------------

BIG_FILES = 60
BIG_PER_FILE = 20  # x parametrized: 1,200 tests
BIG_TEST = """
import pytest

# What a test module that imports page objects or a client library spends at import: ~10 ms.
LOOKUP = {{i: str(i) * 3 for i in range(80_000)}}

@pytest.mark.parametrize("n", range({per_file}))
def test_page_{file}(http, n):
    assert http.get("/ping").status_code == 200
"""
PHASES_SHOWN = ("python and testpool imports", "discovery", "plan", "secrets", "tmux launch",
                "pytest start and collection")  # fmt: skip


def _example_project(root: Path) -> Project:
    """The bundled e2e/ suite and its server, as this repository configures them."""
    project = Project(root, "example", port_start=45000)
    shutil.rmtree(project.tests)
    shutil.copytree(REPO / "e2e", project.root / "e2e")
    (project.root / "testpool.toml").write_text(
        'server = "{python} e2e/app/server.py"\ntests = "e2e"\ndata_seed = "e2e/seed"\n'
        f'inputs = ["e2e/app/**"]\nworkers = 4\nport_base = {project.port_base}\n'
    )
    return project


def _big_project(root: Path) -> Project:
    project = Project(root, "big", port_start=45500)
    for index in range(BIG_FILES):
        (project.tests / f"test_big_{index:02d}.py").write_text(
            BIG_TEST.format(file=index, per_file=BIG_PER_FILE)
        )
    project.config(workers=4)
    return project


def _breakdown_of(report: dict[str, Any]) -> dict[str, float]:
    phases = {p["name"]: p for p in report["startup"]["phases"]}
    out = {name: phases[name]["seconds"] for name in PHASES_SHOWN if name in phases}
    healthy = [p["end"] for name, p in phases.items() if name.endswith(" healthy") and "end" in p]
    out["workers healthy"] = max(healthy)
    out["pytest ready"] = phases["pytest start and collection"]["end"]
    out["first test"] = phases["first test started"]["start"]
    return out


# (label, suite, testpool arguments). With 4 workers on 2 cores and every test to run, the
# zygote collects every file up front either way: those rows show the noise.
BREAKDOWN_CASES = (
    ("example, every test, 4 workers", "example", ("--full",)),
    ("example, one file's tests, 4 workers", "example", ("--full", "-f", "test_stats")),
    ("example, every test, 1 worker", "example", ("--full", "--workers", "1")),
    ("synthetic, every test, 4 workers", "big", ("--full",)),
    ("synthetic, one file's tests, 4 workers", "big", ("--full", "-f", "test_big_07")),
    ("synthetic, every test, 1 worker", "big", ("--full", "--workers", "1")),
)


def bench_breakdown(root: Path, runs: int, results: dict[str, Any]) -> None:
    projects = {"example": _example_project(root), "big": _big_project(root)}
    for project in projects.values():
        project.list_tests()  # the collection is cached, as in everyday use
        project.testpool("--full")  # and durations are recorded
    rows = []
    for label, suite, args in BREAKDOWN_CASES:
        project = projects[suite]
        samples: dict[str, list[dict[str, float]]] = {"early": [], "full": []}
        pair = (("early", "1"), ("full", "0"))
        for run in range(runs):
            # Side by side, each first in turn: both see the same noise.
            for mode, flag in pair if run % 2 == 0 else pair[::-1]:
                wall, report = project.testpool(*args, env=project.env(TESTPOOL_EARLY_START=flag))
                samples[mode].append({**_breakdown_of(report), "wall": wall})
        medians = {
            mode: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]}
            for mode, runs_ in samples.items()
        }
        rows.append(
            {"label": label, "tests": report["counts"]["passed"],
             "collection": report["startup"].get("collection", ""), **medians}
        )  # fmt: skip
    results["breakdown"] = rows


# --- 5c: workers = "auto" ---------------------------------------------------------------------------


def bench_autoworkers(root: Path, runs: int, results: dict[str, Any]) -> None:
    out = {}
    for label, burn in (("costly", 1.0), ("cheap", 0.0)):
        project = Project(root, f"auto-{label}", port_start=46000)
        server = (project.root / "server.py").read_text()
        (project.root / "server.py").write_text(
            server.replace(
                'time.sleep(float(os.environ.get("BENCH_STARTUP_WAIT", "0")))',
                f"_t = time.process_time()\nwhile time.process_time() - _t < {burn}: pass",
            )
        )
        body = "".join(SYNTHETIC_TEST.format(n=n, ms=100) for n in range(24))
        (project.tests / "test_pages.py").write_text(body)
        project.config()
        project.testpool("--workers", "2")  # durations and a measured server start
        walls = {
            n: median_of(runs, lambda n=n, p=project: p.testpool("--full", "--workers", str(n))[0])
            for n in (1, 2, 4, 8)
        }
        _, report = project.testpool("--full", "--workers", "auto")
        out[label] = {"walls": walls, "choice": report["workers_choice"]}
    results["autoworkers"] = out


# --- report -----------------------------------------------------------------------------------------


# --- 6: many machines: the Redis queue against static shards -----------------------------------

MACHINE_TESTS = 48
MACHINE_WORKERS = 2
# Each test waits base * jitter: the durations recorded last time are only a guide, as with
# real end-to-end tests; a static split plans with them, the queue hands out as workers free up.
NOISY_TEST = """
import os, random

def test_noisy_{n}(http):
    wait = {base} * random.uniform(0.4, 1.6)
    assert http.get(f"/sleep?ms={{int(wait * 1000)}}").status_code == 200
"""


def _redis_server(root: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port_block(1, start=38000)
    folder = root / "redis"
    folder.mkdir()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    server.kill()
    return None


def _machines_project(root: Path) -> Project:
    project = Project(root, "machines")
    rng = __import__("random").Random(5)
    bases = [rng.choice([0.1, 0.1, 0.1, 0.3, 0.3, 0.8, 1.5]) for _ in range(MACHINE_TESTS)]
    for part in range(6):
        body = "".join(
            NOISY_TEST.format(n=n, base=bases[n]) for n in range(part * 8, (part + 1) * 8)
        )
        (project.tests / f"test_noisy_{part}.py").write_text(body)
    project.config(workers=MACHINE_WORKERS)
    project.testpool()  # durations and the collection go into the cache all machines start from
    return project


def _spread(project: Project, count: int, how: list[list[str]]) -> tuple[float, float, float]:
    """Start ``count`` testpool processes at once (each its own ports, results and a copy of the
    cache); returns (makespan, Σ test durations, start-up: until the slowest machine's last
    worker could take a test)."""
    cache = (project.root / ".test-cache.json").read_bytes()
    processes = []
    launched = time.time()
    started = time.perf_counter()
    for index in range(count):
        name = f"m{index}"
        (project.root / f"{name}.cache.json").write_bytes(cache)
        (project.root / f"{name}.toml").write_text(
            'server = "{python} server.py"\ntests = "tests"\n'
            f"workers = {MACHINE_WORKERS}\nport_base = {free_port_block(start=40000 + 10 * index)}\n"
            f'results_dir = "{name}-results"\ncache_file = "{name}.cache.json"\n'
        )
        process = subprocess.Popen(
            [PYTHON, "-m", "testpool", "--config", f"{name}.toml", *how[index]],
            cwd=project.root, env=project.env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        processes.append(process)
    for process in processes:
        _, errors = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a machine failed ({process.returncode}): {errors[-2000:]}")
    makespan = time.perf_counter() - started
    work, ready = 0.0, 0.0
    for index in range(count):
        report = json.loads((project.root / f"m{index}-results" / "report.json").read_text())
        work += sum(t["duration"] for t in report["tests"] if t["status"] != "cached")
        if report["workers_detail"]:
            since = report["started_unix"] - launched
            ready = max(ready, since + max(w["ready"] for w in report["workers_detail"]))
    return makespan, work, ready


def bench_machines(root: Path, runs: int, results: dict[str, Any]) -> None:
    started = _redis_server(root)
    if started is None:
        results["machines"] = {"skipped": "redis-server is not installed"}
        return
    server, url = started
    try:
        project = _machines_project(root)
        rows = []
        for count in (2, 4):
            queue, shard, ideal, ready, shard_ready = [], [], [], [], []
            for run in range(runs):
                build = f"bench-{os.getpid()}-{count}-{run}"
                wall, work, up = _spread(
                    project, count, [["--full", "--queue", url, "--build", build]] * count
                )
                queue.append(wall)
                ideal.append(work / (count * MACHINE_WORKERS))
                ready.append(up)
                wall, _, shard_up = _spread(
                    project,
                    count,
                    [["--full", "--shard", f"{i + 1}/{count}"] for i in range(count)],
                )
                shard.append(wall)
                shard_ready.append(shard_up)
            rows.append(
                {
                    "machines": count,
                    "queue": statistics.median(queue),
                    "shard": statistics.median(shard),
                    "ideal": statistics.median(ideal),
                    "ready": statistics.median(ready),
                    "shard_ready": statistics.median(shard_ready),
                }
            )
        results["machines"] = {"rows": rows, "overhead": _queue_overhead(root, url, runs)}
    finally:
        server.terminate()
        server.wait()


def _queue_overhead(root: Path, url: str, runs: int) -> dict[str, float]:
    """Per test: the Redis round trips alone (lease + finish), and testpool's whole wall time
    with the queue against the embedded one, on trivial tests."""
    sys.path.insert(0, str(REPO))
    import redis

    from testpool.distributed import FINISH, KEYS, LEASE, SEED, keys_of

    client = redis.Redis.from_url(url, decode_responses=True)
    keys = list(keys_of(f"overhead-{os.getpid()}").values())
    count = 1000
    ids = [f"t{n}" for n in range(count)]
    client.eval(SEED, len(KEYS), *keys, "d", count, 0, 0, 30000, "m", 3600, count, *ids, 0, 0)
    attempt = json.dumps(
        {"worker": 0, "status": "passed", "duration": 0, "started": 0, "finished": 0}
    )
    started = time.perf_counter()
    for _ in range(count):
        test_id, _n = client.eval(LEASE, len(KEYS), *keys, "m", 30000, 16, 3, 3600, "{}")
        client.eval(FINISH, len(KEYS), *keys, test_id, "m", "passed", attempt, "{}", 3600)
    round_trips = (time.perf_counter() - started) / count
    client.close()

    project = Project(root, "overhead-queue")
    per_file = TRIVIAL_TESTS // 10
    for part in range(10):
        body = "".join(
            f"\ndef test_ping_{part * per_file + n}(http):\n    assert http.get('/ping').status_code == 200\n"
            for n in range(per_file)
        )
        (project.tests / f"test_ping_{part}.py").write_text(body)
    project.config(workers=4)
    project.list_tests()
    embedded = median_of(runs, lambda: project.testpool("--full")[0])
    queued = median_of(
        runs,
        lambda: project.testpool(
            "--full", "--queue", url, "--build", f"ovh-{os.getpid()}-{time.time_ns()}"
        )[0],
    )
    return {
        "round_trips_ms": round_trips * 1000,
        "embedded_wall": embedded,
        "queue_wall": queued,
        "per_test_ms": (queued - embedded) * 4 / TRIVIAL_TESTS * 1000,
    }


# --- 7: watch mode: from a file write to the first rerun test --------------------------------

WATCH_EDITS = 10
WATCH_TEST = """
def test_ping_{n}(http):
    with open(os.environ["BENCH_TIMES"] + "/{module}_{n}", "a") as out:
        out.write(f"{{time.time()}}\\n")
    assert http.get("/ping").status_code == 200
"""


class WatchProcess:
    """A real `testpool --watch` whose output is read as it comes."""

    def __init__(self, project: Project, env: dict[str, str]) -> None:
        import threading

        self.project = project
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [PYTHON, "-m", "testpool", "--watch"], cwd=project.root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def passes(self) -> int:
        return sum("watching for changes" in line for line in self.lines)

    def wait_passes(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.passes() < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(
                    "testpool --watch did not finish a pass:\n" + "".join(self.lines[-40:])
                )
            time.sleep(0.005)

    def first_start(self, prefix: str) -> float:
        """When (unix time) testpool started the first test whose id starts with ``prefix``
        in its last pass."""
        report = json.loads((self.project.root / "test-results" / "report.json").read_text())
        starts = [
            report["started_unix"] + attempt["started"]
            for test in report["tests"]
            if test["id"].startswith(prefix)
            for attempt in test["attempts"][-1:]
        ]
        return min(starts)

    def stop(self) -> None:
        os.killpg(self.process.pid, 2)  # Ctrl-C
        if self.process.wait(timeout=60) != 130:
            raise SystemExit(
                "testpool --watch did not stop with 130:\n" + "".join(self.lines[-20:])
            )


def _edit_and_time(
    watch: WatchProcess, path: Path, prefix: str, edits: int, times: Path | None = None
) -> tuple[list[float], list[float]]:
    """Edit ``path`` ``edits`` times (a comment line that changes), each after the previous
    rerun ended; returns the write-to-first-start latencies (and to the first body, with times)."""
    starts, bodies = [], []
    for edit in range(edits):
        if times is not None:
            for stamp in times.iterdir():
                stamp.unlink()
        text = path.read_text()
        lines = [line for line in text.splitlines() if not line.startswith("# bench edit")]
        done = watch.passes()
        written = time.time()
        path.write_text("\n".join([*lines, f"# bench edit {edit}"]) + "\n")
        watch.wait_passes(done + 1)
        starts.append(watch.first_start(prefix) - written)
        if times is not None:
            bodies.append(min(float(s.read_text().split()[0]) for s in times.iterdir()) - written)
    return starts, bodies


def bench_watch(root: Path, runs: int, results: dict[str, Any]) -> None:
    edits = max(WATCH_EDITS, runs)
    rows = []
    # The synthetic suite: 10 modules of 12 trivial tests with a session-scoped HTTP client.
    project = Project(root, "watch-synthetic")
    for module in range(10):
        body = "".join(WATCH_TEST.format(n=n, module=module) for n in range(12))
        (project.tests / f"test_watch_{module}.py").write_text("import os, time\n" + body)
    project.config(workers=4)
    for how, refork in (("re-imported in the workers", "0"), ("workers forked anew", "1")):
        times = Path(tempfile.mkdtemp(prefix="bench-watch-times-"))
        env = project.env(BENCH_TIMES=str(times), TESTPOOL_WATCH_REFORK=refork)
        watch = WatchProcess(project, env)
        try:
            watch.wait_passes(1)
            starts, bodies = _edit_and_time(
                watch, project.tests / "test_watch_3.py", "tests/test_watch_3.py", edits, times
            )
        finally:
            watch.stop()
            shutil.rmtree(times)
        rows.append({"change": f"a test module ({how})", "suite": "synthetic, 120 tests",
                     "starts": starts, "bodies": bodies})  # fmt: skip
    # The example suite, as the repository configures it, with 4 workers.
    example = root / "watch-e2e"
    shutil.copytree(REPO / "e2e", example / "e2e", ignore=shutil.ignore_patterns("__pycache__"))
    tmp = root / "watch-e2e-tmp"
    tmp.mkdir()
    (example / "testpool.toml").write_text(
        'server = "{python} e2e/app/server.py"\ntests = "e2e"\ndata_seed = "e2e/seed"\n'
        f'inputs = ["e2e/app/**"]\nworkers = 4\nport_base = {free_port_block()}\n'
    )
    e2e = Project.__new__(Project)
    e2e.root, e2e.tests, e2e.tmp = example, example / "e2e", tmp
    for refork in ("0", "1"):
        watch = WatchProcess(e2e, e2e.env(TESTPOOL_WATCH_REFORK=refork))
        try:
            watch.wait_passes(1)
            changes = [("a test module", "e2e/test_stats.py", "e2e/test_stats.py", edits)]
            label = " (re-imported in the workers)" if refork == "0" else " (workers forked anew)"
            if refork == "0":
                changes += [
                    ("conftest.py (a new zygote collects)", "e2e/conftest.py", "e2e/", max(3, runs)),
                    ("the server's source (servers restart)", "e2e/app/server.py", "e2e/", max(3, runs)),
                ]  # fmt: skip
            for change, path, prefix, count in changes:
                starts, _ = _edit_and_time(watch, example / path, prefix, count)
                if change == "a test module":
                    change += label
                rows.append({"change": change, "suite": "e2e/, 128 tests", "starts": starts})
        finally:
            watch.stop()
    results["watch"] = {"rows": rows}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tmux = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python {platform.python_version()}, {tmux}"


def render(results: dict[str, Any], runs: int) -> str:
    lines = [f"machine: {machine()}; median of {runs} runs", ""]
    if "scaling" in results:
        scaling = results["scaling"]
        lines += [
            f"1. scaling: {SYNTHETIC_TESTS} tests, each waiting {SYNTHETIC_WAIT * 1000:.0f} ms on its worker's server "
            "(a stand-in for page renders or scrapes)",
            "   ready = from invoking testpool until its slowest worker can take a test; ideal = ready + "
            f"{scaling['work']:.0f} s of test time / N; efficiency = ideal / wall; strict = the same with the",
            f"   1-worker ready time ({scaling['one_worker_ready']:.2f} s) instead, as if N workers started as fast as one",
            "",
            "| workers | wall (s) | speed-up | ready (s) | ideal (s) | efficiency | strict efficiency |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['workers']} | {r['wall']:.2f} | {r['speedup']:.2f}x | {r['ready']:.2f} | {r['ideal']:.2f} "
            f"| {r['efficiency']:.2f} | {r['strict_efficiency']:.2f} |"
            for r in scaling["rows"]
        ]
        lines.append("")
    if "overhead" in results:
        lines += [
            f"2. per-test overhead: {TRIVIAL_TESTS} trivial tests (one GET each), 4 workers; gap = one test's body "
            "ending to the next test's body starting on the same worker",
            "",
            "| pytest mode | gap median (ms) | gap p95 (ms) | wall (s) | wall per test (ms) |",
            "|---|---:|---:|---:|---:|",
        ]
        for mode, label in (
            ("session", "session (fast, default)"),
            ("process", "process (one pytest per test)"),
        ):
            row = results["overhead"][mode]
            lines.append(
                f"| {label} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} | {row['wall']:.2f} | {row['per_test_ms']:.1f} |"
            )
        lines.append("")
    if "alternatives" in results:
        alt = results["alternatives"]
        lines += [
            "3. against the alternatives, same synthetic suite",
            "",
            "| runner | wall (s) | testpool / it |",
            "|---|---:|---:|",
            f"| plain pytest, sequential, one server | {alt['sequential']:.2f} | {alt['testpool'][4] / alt['sequential']:.2f} (at 4 workers) |",
        ]
        for n in (4, 8):
            lines.append(
                f"| pytest-xdist -n {n}, one server per xdist worker | {alt['xdist'][n]:.2f} | {alt['ratio'][n]:.2f} |"
            )
            lines.append(f"| testpool --workers {n} | {alt['testpool'][n]:.2f} | 1.00 |")
        lines.append("")
    if "cache" in results:
        cache = results["cache"]
        lines += [
            "4. cache",
            "",
            f"- fully cached re-run of a 1,000-test suite (no worker started): {cache['cached_1000']:.2f} s",
            f"- hashing 10,000 small files: {cache['hash_10000'] * 1000:.0f} ms",
            "",
        ]
    if "startup" in results:
        startup = results["startup"]
        cpu, io = startup["cpu"]["healthy"], startup["io"]["healthy"]
        lines += [
            "5. start-up: time until N workers are healthy, through testpool's pool",
            "",
            "| workers | server starts at once (~50 ms of CPU each) | server waits 0.5 s first (I/O-bound start) |",
            "|---:|---:|---:|",
            *(f"| {n} | {cpu[n]:.3f} s | {io[n]:.3f} s |" for n in (1, 4, 8)),
            f"| 8 / 1 | {startup['cpu']['ratio_8_to_1']:.2f}x | {startup['io']['ratio_8_to_1']:.2f}x |",
        ]
    if "breakdown" in results:
        lines += _render_breakdown(results["breakdown"])
    if "autoworkers" in results:
        lines += _render_autoworkers(results["autoworkers"])
    if "machines" in results:
        machines = results["machines"]
        if "skipped" in machines:
            lines += ["", f"6. many machines: skipped ({machines['skipped']})"]
        else:
            lines += [
                "",
                f"6. many machines, simulated on this one: N testpool processes x {MACHINE_WORKERS} workers, "
                f"{MACHINE_TESTS} tests whose waits vary +-60% around what the cache recorded",
                "   work = the run's total test time / (N x workers); ready = from launch until the slowest",
                "   machine's last worker could take a test (N machines start on these same 2 cores);",
                "   limit = ready + work; queue = --queue (Redis), shard = --shard I/N",
                "",
                "| machines | queue (s) | shard (s) | work (s) | ready (s) | limit (s) | queue / limit | queue / shard |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
                *(
                    f"| {r['machines']} | {r['queue']:.2f} | {r['shard']:.2f} | {r['ideal']:.2f} "
                    f"| {r['ready']:.2f} | {r['ready'] + r['ideal']:.2f} "
                    f"| {r['queue'] / (r['ready'] + r['ideal']):.2f} | {r['queue'] / r['shard']:.2f} |"
                    for r in machines["rows"]
                ),
                "",
                f"   queue overhead: {machines['overhead']['round_trips_ms']:.2f} ms of Redis round trips per test "
                f"(lease + finish); {TRIVIAL_TESTS} trivial tests on 4 workers take "
                f"{machines['overhead']['queue_wall']:.2f} s through the queue against "
                f"{machines['overhead']['embedded_wall']:.2f} s embedded "
                f"({machines['overhead']['per_test_ms']:.1f} ms per test per worker)",
            ]
    if "watch" in results:
        lines += [
            "",
            "7. watch mode: `testpool --watch`, 4 workers, session mode; from writing a file to the first rerun test's",
            "   start (as testpool records it); body = to that test's body starting (its fixtures set up, and where the",
            "   workers are forked anew, the fork and its session fixtures too)",
            "",
            "| change | suite | edits | median (ms) | max (ms) | body median (ms) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in results["watch"]["rows"]:
            body = f"{statistics.median(row['bodies']) * 1000:.0f}" if row.get("bodies") else "-"
            lines.append(
                f"| {row['change']} | {row['suite']} | {len(row['starts'])} "
                f"| {statistics.median(row['starts']) * 1000:.0f} | {max(row['starts']) * 1000:.0f} | {body} |"
            )
    return "\n".join(lines)


def _render_breakdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "5b. start-up breakdown: seconds from invoking testpool, collection cached; early = pytest's zygote",
        "    collects only the files of the tests to run (or of the first tests, with one worker) before",
        "    the workers fork, full = it collects the whole suite first (TESTPOOL_EARLY_START=0)",
        "",
        "| run | tests | first test: early | full | early / full | pytest ready: early | full | wall: early | full |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        early, full = row["early"], row["full"]
        lines.append(
            f"| {row['label']} | {row['tests']} | {early['first test']:.3f} | {full['first test']:.3f} "
            f"| {early['first test'] / full['first test']:.2f} | {early['pytest ready']:.3f} "
            f"| {full['pytest ready']:.3f} | {early['wall']:.2f} | {full['wall']:.2f} |"
        )
    first = rows[0]["early"]
    lines += [
        "",
        f"   where the time goes ({rows[0]['label']}, early):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *(f"| {name} | {first[name]:.3f} |" for name in PHASES_SHOWN if name in first),
        f"| all workers healthy, at | {first['workers healthy']:.3f} |",
        f"| pytest ready to fork, at | {first['pytest ready']:.3f} |",
        f"| first test started, at | {first['first test']:.3f} |",
    ]
    return lines


def _render_autoworkers(auto: dict[str, Any]) -> list[str]:
    lines = [
        "",
        '5c. workers = "auto": 24 tests of 100 ms; wall time of the whole run by worker count, and what auto picked',
        "",
        "| server | 1 | 2 | 4 | 8 | auto picked | its reason |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, name in (
        ("costly", "burns ~1 s of CPU before it listens"),
        ("cheap", "starts in ~50 ms"),
    ):
        row = auto[label]
        walls = row["walls"]
        cells = " | ".join(f"{walls[n]:.2f} s" for n in (1, 2, 4, 8))
        lines.append(
            f"| {name} | {cells} | {row['choice']['workers']} | {row['choice']['reason']} |"
        )
    return lines


SECTIONS = {
    "scaling": bench_scaling,
    "alternatives": bench_alternatives,
    "overhead": bench_overhead,
    "cache": bench_cache,
    "startup": bench_startup,
    "breakdown": bench_breakdown,
    "autoworkers": bench_autoworkers,
    "machines": bench_machines,
    "watch": bench_watch,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median is shown)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="tpbench-"))
    try:
        for name in SECTIONS:
            if name in chosen:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                SECTIONS[name](root, args.runs, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results.pop("_synthetic", None)
    print(render(results, args.runs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
