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
