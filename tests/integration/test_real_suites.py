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


def test_parametrize_ids_made_from_a_worker_variable_say_why_they_were_not_collected(
    project: Project,
) -> None:
    project.write(
        "tests/test_p.py",
        """
        import os
        import pytest

        @pytest.mark.parametrize("port", [os.environ["PORT"]])
        def test_port(port):
            pass

        @pytest.mark.parametrize("port", [os.environ["PORT"]], ids=["port"])
        def test_port_with_an_id(port):
            assert port == os.environ["PORT"]
        """,
    )
    project.config(workers=1)

    result = project.run()

    # Discovery saw PORT=0; the worker's pytest imports the module anew with its own PORT.
    assert result.statuses == {
        "tests/test_p.py::test_port[0]": "failed",
        "tests/test_p.py::test_port_with_an_id[port]": "passed",
    }, result.stdout
    assert "parametrize ids made from TEST_BASE_URL, PORT" in result.stdout
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
import pytest

# Read at import: in session mode while the suite is collected, before any worker exists, and
# again in each worker that runs one of these tests.
BASE = os.environ.get("TEST_BASE_URL", {fallback!r})
client = httpx.Client(base_url=os.environ.get("TEST_BASE_URL", {fallback!r}), timeout=10)
URLS = [os.environ.get("TEST_BASE_URL", {fallback!r}) + path for path in ("/health", "/env")]


def _on_my_worker(response):
    assert response.status_code == 200
    if response.url.path == "/env":
        assert response.json()["TESTPOOL_WORKER"] == os.environ["TESTPOOL_WORKER"]


def test_module_constant_{n}():
    _on_my_worker(httpx.get(BASE + "/env", timeout=10))


def test_module_client_{n}():
    _on_my_worker(client.get("/env"))


@pytest.mark.parametrize("url", URLS, ids=["health", "env"])
def test_parametrize_list_{n}(url):
    _on_my_worker(httpx.get(url, timeout=10))


def test_read_in_the_test_{n}():
    base = os.environ.get("TEST_BASE_URL", {fallback!r})
    _on_my_worker(httpx.get(base + "/env", timeout=10))


class TestClassBody{n}(unittest.TestCase):
    # A class body runs at import too.
    URL = os.environ.get("TEST_BASE_URL", {fallback!r}) + "/env"

    def test_class_constant(self):
        _on_my_worker(httpx.get(self.URL, timeout=10))
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_module_level_read_of_the_worker_url_gets_the_workers_value_in_both_modes(
    project: Project, decoy: Decoy, mode: str
) -> None:
    for n in range(4):
        project.write(f"tests/test_m{n}.py", MODULE_LEVEL_SUITE.format(fallback=decoy.url, n=n))
    project.config(workers=4, pytest_mode=mode)

    result = project.run()

    assert decoy.hits == [], "a test reached the fallback server instead of its worker's"
    kinds = ["module_constant", "module_client", "parametrize_list", "read_in_the_test"]
    for kind in [*kinds, "class_constant"]:
        assert sum(kind in test for test in result.statuses) == (8 if "parametrize" in kind else 4)
    assert len(result.statuses) == 24
    assert set(result.statuses.values()) == {"passed"}, result.stdout
    assert result.returncode == 0
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_a_conftest_or_helper_that_reads_at_import_fails_loudly_in_session_mode_only(
    project: Project, decoy: Decoy, mode: str
) -> None:
    project.write(
        "tests/conftest.py",
        f"""
        import os
        import pytest

        # A conftest is imported once, before any worker exists, and never again.
        BASE = os.environ.get("TEST_BASE_URL", {decoy.url!r})

        @pytest.fixture
        def api():
            return BASE
        """,
    )
    project.write(
        "tests/helpers.py",
        f"""
        import os

        URL = os.environ.get("TEST_BASE_URL", {decoy.url!r}) + "/health"
        """,
    )
    project.write(
        "tests/sub/test_c.py",
        """
        import httpx
        from helpers import URL

        def test_uses_the_conftest_constant(api):
            assert httpx.get(api + "/health", timeout=10).status_code == 200

        def test_uses_the_helper_constant():
            assert httpx.get(URL, timeout=10).status_code == 200
        """,
    )
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    assert decoy.hits == [], "a test reached the fallback server instead of its worker's"
    tests = ["test_uses_the_conftest_constant", "test_uses_the_helper_constant"]
    if mode == "process":
        # Each test's own pytest imports them with its worker's environment.
        assert set(result.statuses.values()) == {"passed"}, result.stdout
    else:
        assert result.statuses == {f"tests/sub/test_c.py::{t}": "failed" for t in tests}
        assert result.report is not None
        for test in result.report["tests"]:
            # The test module's own constant, and the conftest.py files of its folders.
            message = test["message"]
            assert message.startswith(
                "test_c.URL read the worker's environment at import; tests/conftest.py read "
                "TEST_BASE_URL at import, while pytest collected the suite (before any worker "
                "existed): "
            ), message
            output = (project.root / test["log"]).read_text()
            assert "tests/conftest.py (line 5) read TEST_BASE_URL at import" in output
            assert "tests/helpers.py (line 3) read TEST_BASE_URL at import" in output
            assert "not conftest.py files, plugins or other modules the tests import" in output
        assert "testpool-collection-time" in result.stdout
    project.assert_clean(result.run_id)


REIMPORTED_CONFTEST = """
import pytest

@pytest.fixture
def base():
    return "conftest"

def pytest_collection_modifyitems(items):
    for item in items:
        if item.name.endswith("_conftest_skips"):
            item.add_marker(pytest.mark.skip(reason="the conftest skips it"))
"""

# Everything pytest builds from a module while collecting it, built from values read at import.
REIMPORTED_SUITE = """
import os
import unittest
import httpx
import pytest

BASE = os.environ["TEST_BASE_URL"]
WORKER = os.environ.get("TESTPOOL_WORKER")  # None while collecting
PORT = int(os.environ["PORT"])
AT_SETUP = []


def setup_module():
    AT_SETUP.append(BASE)


def _worker_of(url):
    return httpx.get(url + "/env", timeout=10).json()["TESTPOOL_WORKER"]


@pytest.fixture(autouse=True)
def on_my_worker():
    assert _worker_of(BASE) == os.environ["TESTPOOL_WORKER"]
    yield
    assert _worker_of(BASE) == os.environ["TESTPOOL_WORKER"]


@pytest.fixture(scope="module")
def module_base():
    return BASE


@pytest.fixture(params=[BASE, BASE + "/"], ids=["bare", "slash"])
def endpoint(request):
    return request.param.rstrip("/")


@pytest.fixture
def base(base):
    # Overrides the conftest's fixture of that name and builds on it.
    return base + "+" + BASE


def test_setup_module():
    assert AT_SETUP == [os.environ["TEST_BASE_URL"]]


def test_module_scoped_fixture(module_base):
    assert module_base == os.environ["TEST_BASE_URL"]


def test_parametrized_fixture(endpoint):
    assert _worker_of(endpoint) == os.environ["TESTPOOL_WORKER"]


def test_overriding_fixture(base):
    assert base == "conftest+" + os.environ["TEST_BASE_URL"]


@pytest.mark.parametrize("port", [PORT, str(PORT)], ids=["int", "str"])
def test_parametrize(port):
    assert int(port) == int(os.environ["PORT"])


@pytest.mark.skipif(WORKER is None, reason="read no worker at import")
def test_skipif_false_in_a_worker():
    assert WORKER == os.environ["TESTPOOL_WORKER"]


@pytest.mark.skipif(WORKER is not None, reason="a worker exists")
def test_skipif_true_in_a_worker():
    pass


@pytest.mark.xfail(WORKER is not None, reason="fails in a worker", strict=True)
def test_xfail_in_a_worker():
    assert WORKER is None


def test_the_conftest_skips():
    assert False, "the conftest's pytest_collection_modifyitems marks this test skipped"


class TestCaseReads(unittest.TestCase):
    URL = BASE

    @classmethod
    def setUpClass(cls):
        cls.worker = WORKER

    def test_class_attribute_and_set_up_class(self):
        self.assertEqual(_worker_of(self.URL), os.environ["TESTPOOL_WORKER"])
        self.assertEqual(self.worker, os.environ["TESTPOOL_WORKER"])
"""

REIMPORTED_EXPECTED = {
    "test_setup_module": "passed",
    "test_module_scoped_fixture": "passed",
    "test_parametrized_fixture[bare]": "passed",
    "test_parametrized_fixture[slash]": "passed",
    "test_overriding_fixture": "passed",
    "test_parametrize[int]": "passed",
    "test_parametrize[str]": "passed",
    "test_skipif_false_in_a_worker": "passed",
    "test_skipif_true_in_a_worker": "skipped",
    "test_xfail_in_a_worker": "passed",  # an expected failure counts as passed
    "test_the_conftest_skips": "skipped",
    "TestCaseReads::test_class_attribute_and_set_up_class": "passed",
}


@pytest.mark.parametrize("mode", MODES)
def test_fixtures_and_marks_of_a_module_that_reads_at_import_work_as_in_a_fresh_pytest(
    project: Project, mode: str
) -> None:
    project.write("tests/conftest.py", REIMPORTED_CONFTEST)
    for n in range(2):
        project.write(f"tests/test_r{n}.py", REIMPORTED_SUITE)
    project.config(workers=4, pytest_mode=mode)

    result = project.run()

    expected = {
        f"tests/test_r{n}.py::{name}": status
        for n in range(2)
        for name, status in REIMPORTED_EXPECTED.items()
    }
    assert result.statuses == expected, result.stdout
    assert result.returncode == 0
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_a_module_that_cannot_be_imported_in_a_worker_fails_its_tests_not_the_worker(
    project: Project, mode: str
) -> None:
    project.write(
        "tests/test_broken.py",
        """
        import os

        if os.environ.get("TESTPOOL_WORKER") is not None:
            raise RuntimeError("this module cannot be imported in a worker")

        def test_one():
            pass

        def test_two():
            pass
        """,
    )
    project.write("tests/test_fine.py", "def test_fine_one(): pass\ndef test_fine_two(): pass\n")
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    assert result.statuses == {
        "tests/test_broken.py::test_one": "failed",
        "tests/test_broken.py::test_two": "failed",
        "tests/test_fine.py::test_fine_one": "passed",
        "tests/test_fine.py::test_fine_two": "passed",
    }, result.stdout
    assert result.returncode == 1
    assert result.report is not None
    for test in result.report["tests"]:
        if "broken" in test["id"]:
            assert "RuntimeError: this module cannot be imported in a worker" in test["message"]
            log = (project.root / test["log"]).read_text()
            assert 'raise RuntimeError("this module cannot be imported in a worker")' in log
    assert "exited" not in result.stdout  # no worker process died
    project.assert_clean(result.run_id)


@pytest.mark.parametrize("mode", MODES)
def test_a_module_that_skips_itself_in_a_worker_skips_its_tests(
    project: Project, mode: str
) -> None:
    project.write(
        "tests/test_skipping.py",
        """
        import os
        import pytest

        if os.environ.get("TESTPOOL_WORKER") is not None:
            pytest.skip("not on a worker", allow_module_level=True)

        def test_skipped():
            pass
        """,
    )
    project.write("tests/test_fine.py", "def test_fine(): pass\n")
    project.config(workers=1, pytest_mode=mode)

    result = project.run()

    assert result.statuses == {
        "tests/test_skipping.py::test_skipped": "skipped",
        "tests/test_fine.py::test_fine": "passed",
    }, result.stdout
    assert result.returncode == 0
    assert result.report is not None
    skipped = next(t for t in result.report["tests"] if t["status"] == "skipped")
    assert "not on a worker" in skipped["message"]
    project.assert_clean(result.run_id)


IMPORT_LOGGING_MODULE = """
import json, os

def _log(path, *what):
    with open(path, "a") as handle:
        handle.write(json.dumps([__name__, os.getpid(), *what]) + "\\n")

_log({imports!r})
{reads}

def test_crashes_once():
    _log({ran!r}, os.environ["TESTPOOL_WORKER"])
    if {crash} and not os.path.exists({flag!r}):
        open({flag!r}, "w").close()
        os._exit(3)
"""


def test_a_module_is_imported_again_once_per_worker_process_and_only_if_it_read_at_import(
    project: Project, tmp_path: Path
) -> None:
    imports, ran = tmp_path / "imports.jsonl", tmp_path / "ran.jsonl"
    paths = {"imports": str(imports), "ran": str(ran), "flag": str(tmp_path / "crashed")}
    tests = "".join(
        f"\ndef test_{n}():\n    _log({str(ran)!r}, os.environ['TESTPOOL_WORKER'])\n"
        for n in range(6)
    )
    reads = IMPORT_LOGGING_MODULE.format(
        reads='BASE = os.environ["TEST_BASE_URL"]', crash=True, **paths
    )
    project.write("tests/test_reads.py", reads + tests)
    project.write(
        "tests/test_quiet.py", IMPORT_LOGGING_MODULE.format(reads="", crash=False, **paths) + tests
    )
    project.config(workers=2, pytest_mode="session")

    result = project.run("--retries", "1")

    assert result.statuses["tests/test_reads.py::test_crashes_once"] == "flaky", result.stdout
    assert result.returncode == 0
    imported = [json.loads(line) for line in imports.read_text().splitlines()]
    tested = [json.loads(line) for line in ran.read_text().splitlines()]
    for module, again in (("test_reads", True), ("test_quiet", False)):
        importers = [pid for name, pid in imported if name == module]
        testers = {pid for name, pid, _ in tested if name == module}
        # Discovery and the zygote import it while collecting; workers are forks of the zygote.
        assert len(set(importers)) == len(importers), "imported twice in one process"
        if again:  # and each worker process that ran one of its tests, once
            assert len(importers) == 2 + len(testers) and testers <= set(importers)
            assert len(testers) >= 2  # the crashed process's replacement imported it again
        else:
            assert len(importers) == 2 and not testers & set(importers)
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


def test_a_module_that_skips_itself_while_collected_is_named(project: Project) -> None:
    """Regression: a test module skipped at import (`pytest.importorskip` of an optional
    dependency, as attrs' suite does) has no test ids; pytest says "1 skipped", testpool said
    nothing. It names the file and the reason, also when the collection comes from the cache."""
    project.write("tests/test_runs.py", "def test_runs():\n    pass\n")
    project.write(
        "tests/test_optional.py",
        'import pytest\n\npytest.importorskip("no_such_module_here")\n\ndef test_x():\n    pass\n',
    )
    project.write(
        "tests/test_platform.py",
        'import pytest\n\npytest.skip("not on this OS", allow_module_level=True)\n',
    )
    project.config()
    expected = [
        "testpool: tests/test_optional.py: no tests: it skipped itself while collected (could "
        "not import 'no_such_module_here': No module named 'no_such_module_here')",
        "testpool: tests/test_platform.py: no tests: it skipped itself while collected (not on "
        "this OS)",
    ]
    first = project.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stderr.splitlines() == expected
    assert first.statuses == {"tests/test_runs.py::test_runs": "passed"}
    again = project.run("list")  # the collection is read back from the cache
    assert again.stderr.splitlines() == expected
