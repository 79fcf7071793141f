"""Kinds of real pytest suites that session mode (collect once, fork per worker) must run right:
unittest.TestCase classes, projects whose pytest settings turn on pytest-xdist, and modules that
read the worker's environment at import. Each runs on 4 workers in both pytest modes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import Project

from testpool.workerenv import STAND_INS

MODES = ["session", "process"]


def _seen_by_each_test(folder: Path) -> dict[str, dict[str, str]]:
    return {path.name: json.loads(path.read_text()) for path in folder.iterdir()}


def _workers_by_test(report: dict[str, object]) -> dict[str, str]:
    tests = report["tests"]
    assert isinstance(tests, list)
    return {t["id"].rsplit("::", 1)[1]: str(t["worker"]) for t in tests}


UNITTEST_SUITE = """
import json, os, unittest
import httpx

SEEN = {seen!r}


class TestWorkerEnvironment(unittest.TestCase):
    def __init__(self, methodName="runTest"):
        super().__init__(methodName)
        # Read when the instance is made: pytest >= 8 makes it while collecting.
        self.base_url = os.environ.get("TEST_BASE_URL")
        self.worker = os.environ.get("TESTPOOL_WORKER")

    def setUp(self):
        self.attempt = "set up"

    def check(self):
        assert self.base_url, "TEST_BASE_URL was not set when this TestCase was created"
        served = httpx.get(self.base_url + "/env", timeout=10).json()
        self.assertEqual(served["TESTPOOL_WORKER"], self.worker)
        self.assertEqual(self.worker, os.environ["TESTPOOL_WORKER"])
        name = self.id().rsplit(".", 1)[1]
        with open(os.path.join(SEEN, name), "w") as handle:
            json.dump({{"worker": self.worker, "base_url": self.base_url}}, handle)
"""


@pytest.mark.parametrize("mode", MODES)
def test_unittest_testcases_are_created_in_the_worker_with_its_environment(
    project: Project, tmp_path: Path, mode: str
) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    tests = "".join(f"\n    def test_{n}(self):\n        self.check()\n" for n in range(8))
    project.write("tests/test_unit.py", UNITTEST_SUITE.format(seen=str(seen)) + tests)
    project.config(workers=4, pytest_mode=mode)

    # With retries, a test that failed on the instance made at collection would pass on a
    # retry on the same worker (pytest makes a new instance after a test) and be "flaky".
    result = project.run("--retries", "1")

    assert result.returncode == 0, result.stdout
    assert set(result.statuses.values()) == {"passed"}, result.stdout
    assert result.report is not None
    on_worker = _workers_by_test(result.report)
    for name, saw in _seen_by_each_test(seen).items():
        assert saw["worker"] == on_worker[name], (name, saw)
        assert saw["base_url"] == f"http://127.0.0.1:{project.port_base + int(saw['worker'])}"
    assert len(on_worker) == 8
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_a_testcase_whose_init_fails_in_the_worker_fails_alone(project: Project, mode: str) -> None:
    project.write(
        "tests/test_init.py",
        """
        import os, unittest

        class TestBroken(unittest.TestCase):
            def __init__(self, methodName="runTest"):
                super().__init__(methodName)
                if "TESTPOOL_WORKER" in os.environ:
                    raise RuntimeError("no server for this TestCase")

            def test_broken(self):
                pass

        class TestFine(unittest.TestCase):
            def test_fine(self):
                pass
        """,
    )
    project.config(workers=1, pytest_mode=mode)

    result = project.run("--retries", "1")

    assert result.returncode == 1, result.stdout
    assert result.statuses == {
        "tests/test_init.py::TestBroken::test_broken": "failed",
        "tests/test_init.py::TestFine::test_fine": "passed",
    }
    assert "no server for this TestCase" in result.stdout
    project.assert_clean(result.run_id)


XDIST_SUITE = """
import json, os
import httpx, pytest

SEEN = {seen!r}


def _check(name):
    assert "PYTEST_XDIST_WORKER" not in os.environ, "the test ran in a pytest-xdist worker"
    served = httpx.get(os.environ["TEST_BASE_URL"] + "/env", timeout=10).json()
    assert served["TESTPOOL_WORKER"] == os.environ["TESTPOOL_WORKER"]
    with open(os.path.join(SEEN, name), "w") as handle:
        json.dump({{"worker": os.environ["TESTPOOL_WORKER"]}}, handle)
"""


@pytest.mark.parametrize("mode", MODES)
def test_pytest_xdist_in_the_project_settings_does_not_take_over(
    project: Project, tmp_path: Path, mode: str
) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    project.write(
        "pyproject.toml",
        """
        [tool.pytest.ini_options]
        addopts = "-n auto --dist=loadgroup"
        """,
    )
    grouped = "".join(
        f"\n@pytest.mark.xdist_group('g{n % 2}')\ndef test_grouped_{n}():\n    _check('test_grouped_{n}')\n"
        for n in range(4)
    )
    plain = "".join(f"\ndef test_plain_{n}():\n    _check('test_plain_{n}')\n" for n in range(4))
    project.write("tests/test_x.py", XDIST_SUITE.format(seen=str(seen)) + grouped + plain)
    project.config(workers=4, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 0, result.stdout
    assert set(result.statuses.values()) == {"passed"}, result.stdout
    assert result.report is not None
    on_worker = _workers_by_test(result.report)
    assert {name: saw["worker"] for name, saw in _seen_by_each_test(seen).items()} == on_worker
    project.assert_clean(result.run_id)


def test_a_test_the_workers_did_not_collect_fails_with_the_likely_causes(project: Project) -> None:
    # Discovery collects both tests; the workers' pytest (which has TESTPOOL_CMD_FD) drops one.
    project.write(
        "tests/conftest.py",
        """
        import os

        def pytest_collection_modifyitems(config, items):
            if "TESTPOOL_CMD_FD" in os.environ:
                items[:] = [item for item in items if "dropped" not in item.name]
        """,
    )
    project.write("tests/test_a.py", "def test_kept(): pass\ndef test_dropped(): pass\n")
    project.config(workers=1)

    result = project.run()

    assert result.returncode == 1
    assert result.statuses == {
        "tests/test_a.py::test_kept": "passed",
        "tests/test_a.py::test_dropped": "failed",
    }
    assert result.report is not None
    dropped = next(t for t in result.report["tests"] if t["status"] == "failed")
    assert "did not collect this test (it collected 1 test(s)" in dropped["message"]
    assert "parametrize ids made from a set" in result.stdout
    project.assert_clean(result.run_id)


class Decoy:
    """A developer's own server on the URL a suite falls back to: it answers everything."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        decoy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                decoy.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    server = Decoy()
    yield server
    server.close()


MODULE_LEVEL_SUITE = """
import os
import unittest
import httpx

# Read at import: in session mode that is while the suite is collected, before any worker exists.
BASE = os.environ.get("TEST_BASE_URL", {fallback!r})


def test_module_constant_{n}():
    assert httpx.get(BASE + "/health", timeout=10).status_code == 200


def test_read_in_the_test_{n}():
    base = os.environ.get("TEST_BASE_URL", {fallback!r})
    assert httpx.get(base + "/health", timeout=10).status_code == 200


class TestClassBody{n}(unittest.TestCase):
    # A class body runs at import too.
    URL = os.environ.get("TEST_BASE_URL", {fallback!r}) + "/health"

    def test_class_constant(self):
        assert httpx.get(self.URL, timeout=10).status_code == 200
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_module_level_read_of_the_worker_url_never_reaches_another_server(
    project: Project, decoy: Decoy, mode: str
) -> None:
    for n in range(4):
        project.write(f"tests/test_m{n}.py", MODULE_LEVEL_SUITE.format(fallback=decoy.url, n=n))
    project.config(workers=4, pytest_mode=mode)

    result = project.run()

    assert decoy.hits == [], "a test reached the fallback server instead of its worker's"
    statuses = result.statuses
    readers_in_tests = {k: v for k, v in statuses.items() if "test_read_in_the_test" in k}
    constants = {k: v for k, v in statuses.items() if "constant" in k}
    assert len(constants) == len(readers_in_tests) * 2 == 8
    assert set(readers_in_tests.values()) == {"passed"}, result.stdout
    if mode == "process":
        # A fresh pytest per test imports the module with the worker's environment.
        assert set(constants.values()) == {"passed"}, result.stdout
        assert result.returncode == 0
    else:
        # Collected once for every worker: the constant holds the collection-time stand-in,
        # which fails, and the failure says why.
        assert set(constants.values()) == {"failed"}, result.stdout
        assert result.returncode == 1
        assert result.report is not None
        for test in result.report["tests"]:
            name = test["id"].split("::", 1)[1]
            if name.startswith("test_module_constant"):
                assert ".BASE read the worker's environment at import" in test["message"], test
            elif name.endswith("test_class_constant"):
                assert ".URL read the worker's environment at import" in test["message"], test
        assert "testpool-collection-time" in result.stdout
    project.assert_clean(result.run_id)


ROLE_CONFTEST = """
import json, os

NAMES = ("TEST_BASE_URL", "PORT", "DATA_DIR", "API_TOKEN", "TESTPOOL_WORKER")
if "TESTPOOL_COLLECT_FILE" in os.environ:
    ROLE = "discovery"
elif "TESTPOOL_CMD_FD" in os.environ:
    ROLE = "zygote"
else:
    ROLE = "one test"
with open({log!r}, "a") as handle:
    handle.write(json.dumps([ROLE, {{name: os.environ.get(name) for name in NAMES}}]) + "\\n")
"""


@pytest.mark.parametrize("mode", MODES)
def test_collection_sees_stand_ins_for_the_worker_variables_and_tests_the_real_ones(
    project: Project, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "imports.jsonl"
    project.write("tests/conftest.py", ROLE_CONFTEST.format(log=str(log)))
    project.write(
        "tests/test_env.py",
        """
        import os
        import httpx

        def test_sees_its_worker():
            served = httpx.get(os.environ["TEST_BASE_URL"] + "/env", timeout=10).json()
            assert served["PORT"] == os.environ["PORT"]
            assert served["DATA_DIR"] == os.environ["DATA_DIR"]
            assert os.path.isdir(os.environ["DATA_DIR"])
            assert os.environ["API_TOKEN"] == "shared-token" == served["API_TOKEN"]
            assert os.environ["TESTPOOL_WORKER"] == "0"
        """,
    )
    # A developer's own values, exported in the shell testpool runs from.
    project.extra_env.update(
        TEST_BASE_URL="http://127.0.0.1:1", PORT="1", DATA_DIR=str(tmp_path), TESTPOOL_WORKER="7"
    )
    project.config(workers=1, pytest_mode=mode, env={"API_TOKEN": "shared-token"})

    result = project.run()

    assert result.returncode == 0, result.stdout
    imports = [json.loads(line) for line in log.read_text().splitlines()]
    stand_ins = {**STAND_INS, "API_TOKEN": "shared-token", "TESTPOOL_WORKER": None}
    collecting = ["discovery", "zygote"] if mode == "session" else ["discovery"]
    assert [role for role, _ in imports if role != "one test"] == collecting
    for role, seen in imports:
        if role == "one test":
            assert seen["TEST_BASE_URL"] == f"http://127.0.0.1:{project.port_base}"
            assert seen["TESTPOOL_WORKER"] == "0"
        else:
            assert seen == stand_ins, role
    project.assert_clean(result.run_id)
