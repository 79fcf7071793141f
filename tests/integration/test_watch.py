"""``testpool --watch`` for real: a real process, real tmux and dev servers, real file edits.

Each test starts ``testpool --watch``, waits for a pass to end (the "watching for changes"
line), edits files, and reads what the next pass ran from its output and from report.json,
polling with deadlines. Every test ends with Ctrl-C (or a kill) and checks nothing is left.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support import Project, _take_terminal, wait_until

WATCHING = "watching for changes"
PASS_TIMEOUT = 90.0

# A dev server whose answers come from its source (VERSION) and its DATA_DIR (the counter).
SERVER = """
import json, os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1"

class Handler(BaseHTTPRequestHandler):
    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send({"ok": True})
        elif self.path == "/version":
            self._send({"version": VERSION, "pid": os.getpid()})
        else:
            self.send_error(404)

    def do_POST(self):
        path = os.path.join(os.environ["DATA_DIR"], "counter")
        value = int(open(path).read()) + 1 if os.path.exists(path) else 1
        with open(path, "w") as handle:
            handle.write(str(value))
        self._send({"value": value})

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("listening", flush=True)
server.serve_forever()
"""

CONFTEST = """
import os
import httpx
import pytest

@pytest.fixture
def api():
    with httpx.Client(base_url=os.environ["TEST_BASE_URL"], trust_env=False) as client:
        yield client
"""

HELPER = """
EXPECTED = 1
"""

TEST_COUNTER = """
from helper import EXPECTED

def test_fresh_data_every_pass(api):
    # DATA_DIR is seeded anew before every pass: the first bump of a pass is always 1.
    assert api.post("/bump").json()["value"] == EXPECTED

def test_counter_again(api):
    assert api.get("/health").status_code == 200
"""

TEST_VERSION = """
def test_version(api):
    assert api.get("/version").json()["version"] == "1"
"""

TEST_PLAIN = """
def test_plain():
    assert 1 + 1 == 2
"""


class Watch:
    """A running ``testpool --watch``, its output read as it comes."""

    def __init__(self, project: Project, *args: str) -> None:
        self.project = project
        self.out: list[str] = []
        self.err: list[str] = []
        self.process = project.popen("--watch", *args)
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.out)

    def passes(self) -> int:
        return self.text.count(WATCHING)

    def wait_pass(self, count: int, timeout: float = PASS_TIMEOUT) -> str:
        """Wait until ``count`` passes have ended; returns the output of the last one."""
        wait_until(
            lambda: self.passes() >= count or self.process.poll() is not None,
            timeout=timeout,
            what=f"pass {count} of testpool --watch",
        )
        assert self.passes() >= count, self.describe()
        return self.text.split(WATCHING)[count - 1]

    def ran(self, output: str) -> dict[str, str]:
        """The tests a pass's output says it ran, and their status (PASSED -> passed)."""
        found = {}
        for line in output.splitlines():
            match = re.match(r"^(PASSED|FAILED|ERROR|TIMEOUT|SKIPPED)\s+(\S+)", line)
            if match:
                found[match.group(2)] = match.group(1).lower()
        return found

    def record(self) -> dict[str, Any]:
        records = list((self.project.state / "runs").glob("*.json"))
        assert len(records) == 1, records
        return dict(json.loads(records[0].read_text()))

    def stop(self, sig: int = signal.SIGINT) -> int:
        os.killpg(self.process.pid, sig)
        return int(self.process.wait(timeout=60))

    def describe(self) -> str:
        return f"stdout:\n{self.text[-6000:]}\nstderr:\n{''.join(self.err)[-3000:]}"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _pump(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


def _project(project: Project, **config: object) -> None:
    project.write("server.py", SERVER)
    project.write("tests/conftest.py", CONFTEST)
    project.write("tests/helper.py", HELPER)
    project.write("tests/test_counter.py", TEST_COUNTER)
    project.write("tests/test_version.py", TEST_VERSION)
    project.write("tests/test_plain.py", TEST_PLAIN)
    project.config(server="{python} server.py", inputs=["server.py"], **config)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


Start = Callable[..., "Watch"]


@pytest.fixture
def watching(project: Project) -> Iterator[Start]:
    started: list[Watch] = []

    def start(*args: str) -> Watch:
        watch = Watch(project, *args)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.kill()


def test_each_change_reruns_exactly_what_it_affects(project: Project, watching: Start) -> None:
    _project(project, workers=2)
    watch = watching()
    first = watch.wait_pass(1)
    assert set(watch.ran(first)) == {
        "tests/test_counter.py::test_fresh_data_every_pass",
        "tests/test_counter.py::test_counter_again",
        "tests/test_version.py::test_version",
        "tests/test_plain.py::test_plain",
    }, watch.describe()
    run_id = str(watch.record()["run_id"])

    # A test file: only its tests rerun, and fail as edited.
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "1 + 1 == 3")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/test_plain.py::test_plain": "failed"}, watch.describe()
    assert "assert (1 + 1) == 3" in second
    assert project.cache()["tests"]["tests/test_plain.py::test_plain"]["status"] == "failed"
    # ... and pass again once fixed (the same size as the failing version, within the second).
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 3", "1 + 2 == 3")
    third = watch.wait_pass(3)
    assert watch.ran(third) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()
    assert project.cache()["tests"]["tests/test_plain.py::test_plain"]["status"] == "passed"

    # A helper that one test module imports: that module's tests rerun, on fresh data (the
    # counter starts from the seed again, so the first bump of the pass is 1 once more).
    _edit(project.root / "tests/helper.py", "EXPECTED = 1", "EXPECTED = 1  # edited")
    fourth = watch.wait_pass(4)
    assert watch.ran(fourth) == {
        "tests/test_counter.py::test_fresh_data_every_pass": "passed",
        "tests/test_counter.py::test_counter_again": "passed",
    }, watch.describe()

    # A new test file is collected and run, alone.
    project.write("tests/test_new.py", "def test_brand_new():\n    assert True\n")
    fifth = watch.wait_pass(5)
    assert watch.ran(fifth) == {"tests/test_new.py::test_brand_new": "passed"}, watch.describe()

    # A test added to a file that has others: the file's tests rerun, the new one among them.
    _edit(
        project.root / "tests/test_new.py",
        "assert True\n",
        "assert True\n\ndef test_two():\n    pass\n",
    )
    sixth = watch.wait_pass(6)
    assert watch.ran(sixth) == {
        "tests/test_new.py::test_brand_new": "passed",
        "tests/test_new.py::test_two": "passed",
    }, watch.describe()

    # A save that changes nothing runs nothing: the next pass is the next real change's.
    (project.root / "tests/test_new.py").write_text(
        (project.root / "tests/test_new.py").read_text()
    )
    _edit(project.root / "tests/test_plain.py", "1 + 2 == 3", "2 + 2 == 4")
    seventh = watch.wait_pass(7)
    assert watch.ran(seventh) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()

    # report.json holds the suite as it stands, the new tests included.
    report = project.report()
    assert report is not None
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses["tests/test_new.py::test_two"] == "passed"
    assert statuses["tests/test_plain.py::test_plain"] == "passed"
    assert len(statuses) == 6

    # A test file removed: nothing reruns, and its tests leave the reports.
    (project.root / "tests/test_new.py").unlink()
    eighth = watch.wait_pass(8)
    assert "no test depends on what changed" in eighth, watch.describe()
    report = project.report()
    assert report is not None
    assert {t["id"] for t in report["tests"]} == set(statuses) - {
        "tests/test_new.py::test_brand_new",
        "tests/test_new.py::test_two",
    }

    assert watch.stop() == 130, watch.describe()
    assert watch.passes() == 8, watch.describe()
    assert "interrupted" in watch.text
    project.assert_clean(run_id)


def test_server_sources_restart_the_servers(project: Project, watching: Start) -> None:
    _project(project, workers=2)
    watch = watching()
    watch.wait_pass(1)
    record = watch.record()
    run_id = str(record["run_id"])
    base = f"http://127.0.0.1:{project.port_base}"
    old_pid = httpx.get(base + "/version").json()["pid"]

    _edit(project.root / "server.py", 'VERSION = "1"', 'VERSION = "2"')
    second = watch.wait_pass(2)
    assert "restarting the servers" in second, watch.describe()
    # Every test reruns (the servers' sources are everyone's input), against the new server.
    assert watch.ran(second) == {
        "tests/test_counter.py::test_fresh_data_every_pass": "passed",
        "tests/test_counter.py::test_counter_again": "passed",
        "tests/test_version.py::test_version": "failed",
        "tests/test_plain.py::test_plain": "passed",
    }, watch.describe()
    assert httpx.get(base + "/version").json()["pid"] != old_pid

    # A server that no longer starts: said once, and the watch goes on until it is fixed.
    _edit(project.root / "server.py", 'VERSION = "2"', 'VERSION = "2"\nraise SystemExit(3)')
    wait_until(lambda: "fix it and save" in "".join(watch.err), timeout=PASS_TIMEOUT, what="error")
    assert "failed to start" in "".join(watch.err), watch.describe()
    assert watch.process.poll() is None
    _edit(project.root / "server.py", 'VERSION = "2"\nraise SystemExit(3)', 'VERSION = "1"')
    third = watch.wait_pass(4)  # the failed start ended a pass of its own (nothing ran)
    assert watch.ran(third)["tests/test_version.py::test_version"] == "passed", watch.describe()

    # The run's record lists the new servers: a kill -9 now is cleaned by the reaper.
    groups = {p["pgid"] for p in watch.record()["processes"]}
    server_pid = httpx.get(base + "/version").json()["pid"]
    assert any(server_pid in _family(pgid) for pgid in groups), (server_pid, groups)
    os.kill(watch.process.pid, signal.SIGKILL)
    watch.process.wait(timeout=10)
    project.assert_clean(run_id)


def _family(pgid: int) -> set[int]:
    try:
        return {pgid} | {child.pid for child in psutil.Process(pgid).children(recursive=True)}
    except psutil.Error:
        return set()


def test_an_edit_keeping_size_and_mtime_runs_the_new_code(
    project: Project, watching: Start
) -> None:
    # Bytecode is written (as on most machines): Python trusts a helper module's .pyc whose
    # recorded source size and modification second match, which this edit keeps (as `cp -p`,
    # `rsync -t` or a quick same-size edit within the second do).
    project.extra_env["PYTHONDONTWRITEBYTECODE"] = ""
    _project(project, workers=2)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])
    path = project.root / "tests/helper.py"
    before = path.stat()
    assert list((path.parent / "__pycache__").glob("helper.*.pyc")), "no bytecode written"
    _edit(path, "EXPECTED = 1", "EXPECTED = 2")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = watch.wait_pass(2)
    assert watch.ran(second) == {
        "tests/test_counter.py::test_fresh_data_every_pass": "failed",
        "tests/test_counter.py::test_counter_again": "passed",
    }, watch.describe()
    assert "assert 1 == 2" in second
    # Again: the bytecode the workers share (compiled by one of them) is not trusted either.
    _edit(path, "EXPECTED = 2", "EXPECTED = 1")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    third = watch.wait_pass(3)
    assert watch.ran(third) == {
        "tests/test_counter.py::test_fresh_data_every_pass": "passed",
        "tests/test_counter.py::test_counter_again": "passed",
    }, watch.describe()
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_conftest_and_broken_modules(project: Project, watching: Start) -> None:
    _project(project, workers=1)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])

    # conftest.py: a new zygote collects the suite, and every test that uses it reruns.
    _edit(project.root / "tests/conftest.py", "def api():", "def api(request):")
    second = watch.wait_pass(2)
    assert "collecting the suite again (tests/conftest.py changed)" in second, watch.describe()
    assert len(watch.ran(second)) == 4, watch.describe()

    # A module that no longer imports: its tests fail with pytest's error; the others are
    # untouched; fixing it brings them back.
    _edit(project.root / "tests/test_plain.py", "def test_plain():", "def test_plain(:")
    third = watch.wait_pass(3)
    assert watch.ran(third) == {"tests/test_plain.py::test_plain": "failed"}, watch.describe()
    assert "could not be collected" in "".join(watch.err)
    assert "SyntaxError" in "".join(watch.err)
    _edit(project.root / "tests/test_plain.py", "def test_plain(:", "def test_plain():")
    fourth = watch.wait_pass(4)
    assert watch.ran(fourth) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()

    # A test file in a folder that held none: collected by a new zygote.
    project.write("tests/deeper/test_deep.py", "def test_deep():\n    pass\n")
    fifth = watch.wait_pass(5)
    assert "collecting the suite again (a test file in a new folder)" in fifth, watch.describe()
    assert watch.ran(fifth) == {"tests/deeper/test_deep.py::test_deep": "passed"}, watch.describe()

    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_configuration_change_starts_again(project: Project, watching: Start) -> None:
    _project(project, workers=1)
    watch = watching()
    watch.wait_pass(1)
    first_run = str(watch.record()["run_id"])

    # More workers: the run stops, cleans up and starts again with the new configuration (all
    # its tests passed and nothing they depend on changed: the cache skips them).
    _project(project, workers=2)
    wait_until(lambda: "starting again" in watch.text, timeout=PASS_TIMEOUT, what="restart")
    watch.wait_pass(2)
    wait_until(lambda: not _traces_of(project, first_run), timeout=10, what="the first run gone")
    second_run = str(watch.record()["run_id"])
    assert second_run != first_run
    assert "on 2 worker(s)" in watch.text.split("starting again")[1], watch.describe()

    # An unreadable configuration keeps the running one, with a warning.
    (project.root / "testpool.toml").write_text("workers = [")
    wait_until(
        lambda: "the running one is kept" in "".join(watch.err), timeout=30, what="a warning"
    )
    assert watch.process.poll() is None
    assert watch.stop() == 130
    project.assert_clean(first_run, second_run)


def _traces_of(project: Project, run_id: str) -> list[str]:
    """What is left of one run (while another run of the project goes on)."""
    found = [f"record {p.name}" for p in (project.state / "runs").glob(f"{run_id}.json")]
    found += [f"folder {p}" for p in project.tmp.glob(f"testpool-{run_id}")]
    tmux = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    found += [f"socket {p}" for p in tmux.glob(f"testpool-{run_id}")]
    for proc in psutil.process_iter(["pid"]):
        try:
            if (
                proc.environ().get("TESTPOOL_RUN_ID") == run_id
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(f"process {proc.pid}")
        except psutil.Error:
            continue
    return found


def test_process_mode_reruns_the_edited_test(project: Project, watching: Start) -> None:
    _project(project, workers=1, pytest_mode="process")
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "1 + 1 == 5")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/test_plain.py::test_plain": "failed"}, watch.describe()
    assert watch.stop(signal.SIGTERM) == 130
    project.assert_clean(run_id)


def test_second_ctrl_c_kills_at_once(project: Project, watching: Start) -> None:
    _project(project, workers=1)
    # Servers that ignore SIGTERM: a graceful stop would wait out the grace period for them.
    stubborn = SERVER.replace(
        "signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
    )
    assert stubborn != SERVER
    project.write("server.py", stubborn)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])
    os.killpg(watch.process.pid, signal.SIGINT)
    wait_until(lambda: "stopping the run" in watch.text, timeout=30, what="the first Ctrl-C")
    started = time.monotonic()
    assert watch.stop() == 130
    assert time.monotonic() - started < 2.5, "the second Ctrl-C waited for the grace period"
    project.assert_clean(run_id)


def test_on_a_terminal(project: Project) -> None:
    """On a real terminal (the live board starts and stops with every pass), Ctrl-C typed
    into it stops the watch."""
    _project(project, workers=1)
    master, slave = os.openpty()
    env = project.env()
    for name in ("NO_COLOR", "COLUMNS", "CI"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "testpool"), "--watch"], cwd=project.root, env=env,
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, preexec_fn=_take_terminal,
    )  # fmt: skip
    os.close(slave)
    received = bytearray()

    def read_until(text: str, count: int = 1) -> None:
        deadline = time.monotonic() + PASS_TIMEOUT
        while received.decode("utf-8", "replace").count(text) < count:
            assert time.monotonic() < deadline, received.decode("utf-8", "replace")[-3000:]
            if select.select([master], [], [], 0.2)[0]:
                try:
                    received.extend(os.read(master, 65536))
                except OSError:
                    break

    try:
        read_until(WATCHING)
        records = list((project.state / "runs").glob("*.json"))
        run_id = records[0].stem
        _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "1 + 1 == 4")
        read_until(WATCHING, 2)
        output = received.decode("utf-8", "replace")
        assert "test_plain" in output.split(WATCHING)[1]
        os.write(master, b"\x03")  # Ctrl-C, typed
        read_until("interrupted")
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    project.assert_clean(run_id)


def test_command_runner_discovers_again(project: Project, watching: Start) -> None:
    """Another runner than pytest's session mode: a changed test file reruns its test (each
    test is a file here), and a new one is discovered."""
    project.write("tests/a.test.sh", "exit 0\n")
    project.write("tests/b.test.sh", "exit 0\n")
    project.config(runner="command", discover="ls tests/*.test.sh", run="sh {id}", workers=1)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])
    project.write("tests/b.test.sh", "exit 1\n")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/b.test.sh": "failed"}, watch.describe()
    project.write("tests/c.test.sh", "exit 0\n")
    third = watch.wait_pass(3)
    assert watch.ran(third) == {"tests/c.test.sh": "passed"}, watch.describe()
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_watch_is_for_one_machine(project: Project) -> None:
    _project(project)
    result = project.run("--watch", "--shard", "1/2")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "testpool: error: --watch runs the suite on this machine: drop --shard and --queue"
    )
    project.assert_clean()


def test_application_code_the_tests_import(project: Project, watching: Start) -> None:
    """The application's Python sources (inputs) are forgotten by every process that loaded
    them: a worker that imported one in a test is forked anew, and once a test module imports
    one, a new zygote collects the suite."""
    _project(project, workers=1)
    project.write("app/__init__.py", "")
    project.write("app/settings.py", 'GREETING = "hi"\n')
    project.write("pytest.ini", "[pytest]\npythonpath = .\n")
    project.write(
        "tests/test_lazy.py",
        """
        def test_lazy():
            from app import settings
            assert settings.GREETING == "hi"
        """,
    )
    project.config(server="{python} server.py", inputs=["server.py", "app/**"], workers=1)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])

    _edit(project.root / "app/settings.py", '"hi"', '"hello"')
    second = watch.wait_pass(2)
    assert watch.ran(second)["tests/test_lazy.py::test_lazy"] == "failed", watch.describe()
    assert "collecting the suite again" not in second

    project.write(
        "tests/test_eager.py",
        "from app.settings import GREETING\n\ndef test_eager():\n    assert GREETING == 'hello'\n",
    )
    third = watch.wait_pass(3)
    assert watch.ran(third) == {"tests/test_eager.py::test_eager": "passed"}, watch.describe()
    _edit(project.root / "app/settings.py", '"hello"', '"hi"')
    fourth = watch.wait_pass(4)
    assert "collecting the suite again (the tests import the application" in fourth
    assert watch.ran(fourth)["tests/test_eager.py::test_eager"] == "failed", watch.describe()
    assert watch.ran(fourth)["tests/test_lazy.py::test_lazy"] == "passed", watch.describe()
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_a_worker_forked_after_a_change_runs_the_new_code(
    project: Project, watching: Start
) -> None:
    """The workers re-import a changed module in place; the pytest they are forked from does
    too, so a worker that replaces a crashed one runs the new code as well."""
    _project(project, workers=1)
    project.write(
        "tests/test_crash.py",
        """
        import os, time

        VALUE = 1

        def test_crashes_its_worker():
            time.sleep(0.5)  # the longest: it runs first
            os._exit(3)

        def test_value():
            assert VALUE == 2
        """,
    )
    watch = watching()
    first = watch.wait_pass(1)
    assert watch.ran(first)["tests/test_crash.py::test_value"] == "failed", watch.describe()
    run_id = str(watch.record()["run_id"])
    _edit(project.root / "tests/test_crash.py", "VALUE = 1", "VALUE = 2")
    second = watch.wait_pass(2)
    ran = watch.ran(second)
    assert ran == {
        "tests/test_crash.py::test_crashes_its_worker": "failed",
        "tests/test_crash.py::test_value": "passed",
    }, watch.describe()
    assert second.index("test_crashes_its_worker") < second.index("test_value")
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_modules_reading_the_workers_variables_at_import(project: Project, watching: Start) -> None:
    """A test module that reads the worker's variables at import is imported anew in the
    worker (issue 11c) after --watch collects it again with the stand-ins: edited, newly
    reading, fixed after failing there, and in a worker forked from the zygote after the
    change. A worker that lists the suite lists the zygote's ids, not its own."""
    _project(project, workers=1)
    reads = """
        import os

        BASE = os.environ["TEST_BASE_URL"]
        VALUE = 1

        def test_base_is_the_workers():
            assert BASE == os.environ["TEST_BASE_URL"] != ""
            assert "testpool-collection-time" not in BASE
            assert VALUE > 0
        """
    project.write("tests/test_reads.py", reads)
    project.write(
        "tests/test_late.py",
        """
        import os

        def test_late():
            base = os.environ["TEST_BASE_URL"]
            assert base.startswith("http://127.0.0.1:")
        """,
    )
    project.write(
        "tests/test_bad.py",
        """
        import os

        assert "testpool-collection-time" in os.environ["TEST_BASE_URL"], "a worker's value"

        def test_bad():
            pass
        """,
    )
    project.write(
        "tests/test_ids.py",
        """
        import os
        import pytest

        URL = os.environ["TEST_BASE_URL"]

        @pytest.mark.parametrize("n", [1, 2], ids=[URL, "b"])
        def test_ids(n):
            pass
        """,
    )
    project.write(
        "tests/test_a_forked.py",
        """
        import os, time

        def test_crashes_its_worker():
            time.sleep(0.5)  # first (no duration is known yet: in the file's order)
            os._exit(3)
        """
        + reads,
    )
    watch = watching()
    first = watch.wait_pass(1)
    ran = watch.ran(first)
    assert ran["tests/test_reads.py::test_base_is_the_workers"] == "passed", watch.describe()
    assert ran["tests/test_bad.py::test_bad"] == "failed", watch.describe()
    assert ran["tests/test_ids.py::test_ids[b]"] == "passed", watch.describe()
    run_id = str(watch.record()["run_id"])
    report = project.report()
    assert report is not None
    ids = {t["id"] for t in report["tests"]}
    assert "tests/test_ids.py::test_ids[http://testpool-collection-time.invalid]" in ids, ids

    # Edited: collected again with the stand-ins, then imported anew with the worker's values.
    _edit(project.root / "tests/test_reads.py", "VALUE = 1", "VALUE = 2")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/test_reads.py::test_base_is_the_workers": "passed"}, (
        watch.describe()
    )

    # A module that starts reading one at import.
    _edit(
        project.root / "tests/test_late.py",
        "def test_late():\n    base = os.environ",
        'BASE = os.environ["TEST_BASE_URL"]\n\ndef test_late():\n    base = BASE or os.environ',
    )
    third = watch.wait_pass(3)
    assert watch.ran(third) == {"tests/test_late.py::test_late": "passed"}, watch.describe()

    # A module that failed when imported anew in the worker, fixed: imported anew again.
    _edit(project.root / "tests/test_bad.py", '"testpool-collection-time" in', '"" in')
    fourth = watch.wait_pass(4)
    assert watch.ran(fourth) == {"tests/test_bad.py::test_bad": "passed"}, watch.describe()

    # A worker forked after the change (replacing one that crashed) imports it anew too.
    _edit(project.root / "tests/test_a_forked.py", "VALUE = 1", "VALUE = 3")
    fifth = watch.wait_pass(5)
    assert watch.ran(fifth) == {
        "tests/test_a_forked.py::test_crashes_its_worker": "failed",
        "tests/test_a_forked.py::test_base_is_the_workers": "passed",
    }, watch.describe()
    assert fifth.index("test_crashes_its_worker") < fifth.index("test_base_is_the_workers")

    # The worker listed the suite after each change: with the zygote's ids throughout.
    report = project.report()
    assert report is not None
    assert {t["id"] for t in report["tests"]} == ids
    assert watch.stop() == 130
    project.assert_clean(run_id)


READS_AT_IMPORT = """
import os, time
import pytest

BASE = os.environ["TEST_BASE_URL"]
VALUE = 1

@pytest.mark.parametrize("n", range(COUNT))
def test_sees_its_worker(n):
    time.sleep(0.15)
    assert BASE == os.environ["TEST_BASE_URL"] and VALUE > 0
    assert "testpool-collection-time" not in BASE
"""


def _workers_of(project: Project, prefix: str) -> set[int]:
    report = project.report()
    assert report is not None
    return {t["worker"] for t in report["tests"] if t["id"].startswith(prefix)}


def test_files_the_zygote_left_out(project: Project, watching: Start) -> None:
    """Issue 15b with --watch: the zygote collects only the files of the first pass's tests.
    A new file in a folder none of whose files was collected is placed and run; the files left
    out stay in the suite; a rerun of every test has the workers collect them (each module
    read TEST_BASE_URL at import: imported anew with each worker's value); an edit of a file
    some workers collected and others (and the zygote) never did is collected by all."""
    _project(project, workers=2)
    project.write("tests/sub/test_b.py", READS_AT_IMPORT.replace("COUNT", "1"))
    project.write("tests/sub/test_d.py", READS_AT_IMPORT.replace("COUNT", "4"))
    assert project.run().returncode == 0  # all cached from now on
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "2 + 2 == 4")
    watch = watching()
    first = watch.wait_pass(1)
    assert watch.ran(first) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()
    run_id = str(watch.record()["run_id"])
    report = project.report()
    assert report is not None
    assert report["startup"]["collection"].startswith("1 file(s) first"), report["startup"]
    suite = {t["id"] for t in report["tests"]}
    assert len(suite) == 9, suite

    # A new file in tests/sub, where the zygote and the workers collected nothing.
    project.write("tests/sub/test_c.py", "def test_c():\n    pass\n")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/sub/test_c.py::test_c": "passed"}, watch.describe()
    assert "collecting the suite again" not in second, watch.describe()  # placed in its folder
    report = project.report()
    assert report is not None
    assert {t["id"] for t in report["tests"]} == suite | {"tests/sub/test_c.py::test_c"}

    # Every test reruns (the servers' sources changed): the workers, forked anew from the
    # zygote, collect the files left out when sent their tests.
    _edit(project.root / "server.py", 'VERSION = "1"', 'VERSION = "1"  # edited')
    third = watch.wait_pass(3)
    ran = watch.ran(third)
    assert len(ran) == 10 and set(ran.values()) == {"passed"}, watch.describe()
    assert _workers_of(project, "tests/sub/test_d.py") == {0, 1}, watch.describe()

    # Edited: collected in place where a worker has it, for the first time where not.
    _edit(project.root / "tests/sub/test_d.py", "VALUE = 1", "VALUE = 2")
    fourth = watch.wait_pass(4)
    assert watch.ran(fourth) == {
        f"tests/sub/test_d.py::test_sees_its_worker[{n}]": "passed" for n in range(4)
    }, watch.describe()
    # test_b.py's one test ran on one worker only; the other worker and the zygote never
    # collected the file.
    (project.root / "tests/sub/test_b.py").write_text(READS_AT_IMPORT.replace("COUNT", "4"))
    fifth = watch.wait_pass(5)
    assert watch.ran(fifth) == {
        f"tests/sub/test_b.py::test_sees_its_worker[{n}]": "passed" for n in range(4)
    }, watch.describe()
    assert _workers_of(project, "tests/sub/test_b.py") == {0, 1}, watch.describe()

    report = project.report()
    assert report is not None
    assert len(report["tests"]) == 13 and {t["status"] for t in report["tests"]} == {"passed"}
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_a_zygote_started_again_collects_the_whole_suite(project: Project, watching: Start) -> None:
    """The zygote of the first pass collected one file; a conftest.py change starts a new one,
    which collects every file: the tests of the files the first left out are listed as the
    changed conftest makes them, not as they were known."""
    _project(project, workers=2)
    conftest = project.root / "tests/conftest.py"
    conftest.write_text(
        conftest.read_text()
        + '\n@pytest.fixture(params=["x"])\ndef flavour(request):\n    return request.param\n'
    )
    project.write("tests/sub/test_e.py", "def test_e(flavour):\n    assert flavour\n")
    assert project.run().returncode == 0
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "2 + 2 == 4")
    watch = watching()
    first = watch.wait_pass(1)
    assert watch.ran(first) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()
    run_id = str(watch.record()["run_id"])

    _edit(conftest, 'params=["x"]', 'params=["x", "y"]')
    second = watch.wait_pass(2)
    assert "collecting the suite again" in second, watch.describe()
    ran = watch.ran(second)
    assert ran["tests/sub/test_e.py::test_e[y]"] == "passed", watch.describe()
    assert set(ran.values()) == {"passed"}, watch.describe()
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_auto_workers_plan_for_the_whole_suite(project: Project, watching: Start) -> None:
    """workers = "auto" with --watch: chosen once, for the whole suite (every worker stays up,
    and a change may rerun any test), even when the first pass runs nothing; report.json keeps
    the choice and the first pass's start-up after every pass. Merging issue 15b with 15c:
    --watch with auto ended in a traceback (the count was never resolved)."""
    _project(project, workers="auto")
    assert project.run().returncode == 0  # the durations and a server start are recorded
    watch = watching()
    first = watch.wait_pass(1)
    assert "testpool: workers: auto:" in first and "4 test(s)" in first, watch.describe()
    run_id = str(watch.record()["run_id"])
    _edit(project.root / "tests/test_plain.py", "1 + 1 == 2", "2 + 2 == 4")
    second = watch.wait_pass(2)
    assert watch.ran(second) == {"tests/test_plain.py::test_plain": "passed"}, watch.describe()
    report = project.report()
    assert report is not None
    choice = report["workers_choice"]
    assert choice["auto"] is True and report["workers"] == choice["workers"] >= 1, choice
    assert "4 test(s)" in choice["reason"], choice
    phases = {phase["name"] for phase in report["startup"]["phases"]}
    assert {"discovery", "tmux launch", "worker 0 healthy", "worker 0 ready"} <= phases, phases
    assert "first test started" not in phases, "the first pass ran none"
    assert watch.stop() == 130
    project.assert_clean(run_id)


def test_each_pass_records_reasons_evidence_and_the_html_report(
    project: Project, watching: Start
) -> None:
    """What a run records (issue 15a) a watch pass records too: why each test reran (in
    report.json and in the cache, for `testpool explain`, with what its digests were made of),
    a failed attempt's server log slice and DATA_DIR listing, and report.html."""
    _project(project, workers=1)
    watch = watching()
    watch.wait_pass(1)
    run_id = str(watch.record()["run_id"])
    html = project.root / project.results_dir / "report.html"
    first_page = html.read_text()
    bump = "tests/test_counter.py::test_fresh_data_every_pass"
    assert bump in first_page

    _edit(project.root / "tests/helper.py", "EXPECTED = 1", "EXPECTED = 2")
    second = watch.wait_pass(2)
    assert watch.ran(second)[bump] == "failed", watch.describe()
    report = project.report()
    assert report is not None
    tests = {t["id"]: t for t in report["tests"]}
    assert tests[bump]["reason"] == "shared test code changed"
    assert tests["tests/test_plain.py::test_plain"]["reason"] == "not in cache"  # pass 1's
    evidence = tests[bump]["attempts"][-1]["evidence"]
    # The counter the failed test left in its DATA_DIR, listed before the next pass re-seeds.
    assert "counter" in {entry["path"] for entry in evidence["data_dir"]}, evidence
    assert "server_log" in evidence
    page = html.read_text()
    assert page != first_page and "assert 1 == 2" in page
    cached = project.cache()
    assert cached["tests"][bump]["reason"] == "shared test code changed"
    assert watch.stop() == 130

    # `testpool explain` names the helper from what the pass recorded.
    _edit(project.root / "tests/helper.py", "EXPECTED = 2", "EXPECTED = 1")
    explained = project.run("explain", "test_fresh_data_every_pass")
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "ran because shared test code changed: failed" in explained.stdout, explained.stdout
    assert "tests/helper.py (modified)" in explained.stdout, explained.stdout
    project.assert_clean(run_id)
