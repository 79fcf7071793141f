"""Fixtures for your tests: which testpool worker a test runs on, and where its server is.

::

    def test_home(base_url):
        assert httpx.get(base_url + "/").status_code == 200

    def test_upload(testpool_worker):
        (testpool_worker.data_dir / "upload.txt").write_text("hi")

This is a pytest plugin of its own (entry point ``testpool.pytest_fixtures``), so the fixtures
exist in every pytest of an environment that has testpool installed: under testpool, which
sets the variables they read for each worker, and in a plain ``pytest`` run, where they read the
same variables if you set them yourself, and skip the test (with the reason) if you did not.
Both are session-scoped: a worker's values do not change while its pytest lives (a restarted
worker gets a new pytest), and session fixtures can use them. The module does nothing until a
test asks for a fixture (besides declaring the ``requires`` marker), and imports little (of
testpool, only its ``base_url`` fixture and the marker's declaration).

``base_url`` (in :mod:`testpool.base_url_fixture`) is left to another plugin that already
defines it: pytest-base-url, which pytest-playwright and pytest-selenium use. Under testpool,
that plugin's ``base_url`` is pointed at the worker (see :mod:`testpool.pytest_plugin`). A
``base_url`` fixture in your own conftest.py wins over both, as pytest's overriding goes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REQUIRED = ("TEST_BASE_URL", "DATA_DIR", "API_TOKEN")
DEFAULT_PORTS = {"http": 80, "https": 443}
OTHER_BASE_URL_PLUGIN = "base_url"  # pytest-base-url's registered name
BASE_URL_MODULE = "testpool.base_url_fixture"


class WorkerEnvironmentError(Exception):
    """The environment does not describe a worker; the message says what is missing."""


@dataclass(frozen=True)
class TestpoolWorker:
    """The worker a test runs on: ``base_url`` has no trailing slash."""

    __test__ = False  # not a test class, even when imported into a test module

    index: int
    port: int
    base_url: str
    data_dir: Path
    api_token: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TestpoolWorker:
        """Read what testpool sets for a worker's tests (or what you set the same way).

        ``TEST_BASE_URL``, ``DATA_DIR`` and ``API_TOKEN`` are required; ``TESTPOOL_WORKER``
        defaults to 0, and ``PORT`` to the port of ``TEST_BASE_URL``.
        """
        missing = [name for name in REQUIRED if not environ.get(name, "").strip()]
        if missing:
            raise WorkerEnvironmentError(
                f"{_names(missing)} {'is' if len(missing) == 1 else 'are'} not set: run the "
                f"tests with testpool, or set {_names(REQUIRED)} to a running server's values"
            )
        base_url = environ["TEST_BASE_URL"].strip().rstrip("/")
        try:
            index = int(environ.get("TESTPOOL_WORKER", "0"))
            port = int(environ.get("PORT") or _port_of(base_url))
        except ValueError as error:
            raise WorkerEnvironmentError(f"bad worker environment: {error}") from None
        return cls(index, port, base_url, Path(environ["DATA_DIR"]), environ["API_TOKEN"])


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.port is not None:
        return parts.port
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"TEST_BASE_URL {url!r} has no port and no http(s) scheme")
    return DEFAULT_PORTS[parts.scheme]


@pytest.fixture(scope="session")
def testpool_worker() -> TestpoolWorker:
    """The worker this test runs on (skips the test if the environment names none)."""
    try:
        return TestpoolWorker.from_environ(os.environ)
    except WorkerEnvironmentError as error:
        pytest.skip(f"testpool_worker: {error}")


def pytest_configure(config: pytest.Config) -> None:
    # @pytest.mark.requires("db") names the shared services a test needs (testpool starts
    # them); declared in every pytest, so a --strict-markers run without testpool accepts it.
    from testpool.pytest_plugin import register_requires_marker

    register_requires_marker(config)
    # Two plugins defining one fixture: which one a test gets would depend on the order pytest
    # happened to load them in. Every other plugin is loaded by now.
    if not config.pluginmanager.has_plugin(OTHER_BASE_URL_PLUGIN):
        config.pluginmanager.import_plugin(BASE_URL_MODULE)
