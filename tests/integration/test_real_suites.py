"""Kinds of real pytest suites that session mode (collect once, fork per worker) must run right:
unittest.TestCase classes, projects whose pytest settings turn on pytest-xdist, and modules that
read the worker's environment at import. Each runs on 4 workers in both pytest modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import Project

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
