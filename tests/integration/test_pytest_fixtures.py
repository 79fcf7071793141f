"""The fixtures for tests (``testpool_worker``, ``base_url``): under testpool in both pytest modes,
in a plain pytest run with and without the variables, and beside pytest-base-url."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import Project

MODES = ["session", "process"]

FIXTURE_SUITE = """
import os
import httpx
import pytest


@pytest.fixture(scope="session")
def client(base_url):
    # A session fixture can use them: the values are the worker's for the pytest's whole life.
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


def test_the_worker(testpool_worker, base_url, client):
    served = client.get("/env").json()
    assert testpool_worker.index == int(os.environ["TESTPOOL_WORKER"]) == int(served["TESTPOOL_WORKER"])
    assert testpool_worker.port == int(served["PORT"])
    assert testpool_worker.base_url == base_url == os.environ["TEST_BASE_URL"]
    assert str(testpool_worker.data_dir) == served["DATA_DIR"] and testpool_worker.data_dir.is_dir()
    assert testpool_worker.api_token == served["API_TOKEN"]
"""


@pytest.mark.parametrize("mode", MODES)
def test_the_fixtures_describe_the_worker_under_testpool(project: Project, mode: str) -> None:
    project.write(
        "tests/test_fixtures.py",
        FIXTURE_SUITE
        + "".join(
            f"\ndef test_{n}(testpool_worker, base_url, client):\n"
            "    test_the_worker(testpool_worker, base_url, client)\n"
            for n in range(5)
        ),
    )
    project.config(workers=2, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 0, result.stdout
    assert set(result.statuses.values()) == {"passed"}
    project.assert_clean(result.run_id)


def test_the_fixtures_are_there_when_pytest_loads_no_plugin_by_itself(project: Project) -> None:
    project.write("tests/test_fixtures.py", FIXTURE_SUITE)
    project.extra_env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    project.config(workers=1)

    result = project.run()

    assert result.returncode == 0, result.stdout
    assert result.statuses == {"tests/test_fixtures.py::test_the_worker": "passed"}
    project.assert_clean(result.run_id)


# pytest-base-url's interface (pytest-playwright and pytest-selenium use it): registered as
# "base_url", a --base-url option and a session-scoped base_url fixture that returns it.
FAKE_PYTEST_BASE_URL = """
import os
import pytest

def pytest_addoption(parser):
    parser.addini("base_url", help="base url")
    parser.addoption("--base-url", metavar="url", default=os.getenv("PYTEST_BASE_URL"))

def pytest_configure(config):
    base_url = config.getoption("base_url") or config.getini("base_url")
    if base_url is not None:
        config.option.base_url = base_url

@pytest.fixture(scope="session")
def base_url(request):
    return "from pytest-base-url: " + str(request.config.getoption("base_url"))
"""


def _with_fake_pytest_base_url(root: Path, addopts: str) -> dict[str, str]:
    plugins = root / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "base_url.py").write_text(FAKE_PYTEST_BASE_URL)
    (root / "pytest.ini").write_text(f"[pytest]\naddopts = -p base_url {addopts}\n")
    return {"PYTHONPATH": str(plugins)}


@pytest.mark.parametrize("mode", MODES)
def test_pytest_base_url_keeps_its_fixture_and_points_at_the_worker_under_testpool(
    project: Project, mode: str
) -> None:
    project.extra_env.update(
        _with_fake_pytest_base_url(project.root, "--base-url http://127.0.0.1:1")
    )
    project.write(
        "tests/test_url.py",
        """
        import os

        def test_base_url_is_the_workers(base_url, testpool_worker):
            assert base_url == "from pytest-base-url: " + os.environ["TEST_BASE_URL"]
            assert testpool_worker.base_url == os.environ["TEST_BASE_URL"]
        """,
    )
    project.config(workers=2, pytest_mode=mode)

    result = project.run()

    assert result.returncode == 0, result.stdout
    project.assert_clean(result.run_id)


# --- plain pytest, no testpool ------------------------------------------------------------------

PLAIN_SUITE = """
def test_worker(testpool_worker):
    print("WORKER", testpool_worker)

def test_url(base_url):
    print("URL", base_url)
"""


def _pytest(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TESTPOOL_", "PYTEST_"))}
    for name in ("TEST_BASE_URL", "DATA_DIR", "API_TOKEN", "PORT", "PYTHONPATH"):
        clean.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-s", *args],
        cwd=folder, env={**clean, **env}, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_outside_testpool_the_fixtures_skip_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN_SUITE)

    done = _pytest(tmp_path, {})

    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout
    assert (
        "testpool_worker: TEST_BASE_URL, DATA_DIR and API_TOKEN are not set: run the tests with "
        "testpool" in done.stdout
    )
    assert "base_url: TEST_BASE_URL not set: run the tests with testpool" in done.stdout


def test_outside_testpool_the_fixtures_read_the_variables(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN_SUITE)
    # Also named in a conftest: the plugin is loaded once, not twice (no "already registered").
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["testpool.pytest_fixtures"]\n')
    env = {"TEST_BASE_URL": "http://localhost:8000/", "DATA_DIR": "/srv/data", "API_TOKEN": "t"}

    done = _pytest(tmp_path, env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert (
        "WORKER TestpoolWorker(index=0, port=8000, base_url='http://localhost:8000', "
        "data_dir=PosixPath('/srv/data'), api_token='t')" in done.stdout
    )
    assert "URL http://localhost:8000\n" in done.stdout.replace(".", "\n")


def test_outside_testpool_pytest_base_url_keeps_its_base_url(tmp_path: Path) -> None:
    env = _with_fake_pytest_base_url(tmp_path, "--base-url http://staging.example")
    (tmp_path / "test_url.py").write_text(
        textwrap.dedent(
            """
            def test_url(base_url):
                assert base_url == "from pytest-base-url: http://staging.example"
            """
        )
    )

    done = _pytest(tmp_path, env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
