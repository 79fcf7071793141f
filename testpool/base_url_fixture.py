"""The ``base_url`` fixture: the worker's server, e.g. ``http://127.0.0.1:9001``.

A plugin of its own, registered by :mod:`testpool.pytest_fixtures` only where no other plugin
defines ``base_url`` (pytest-base-url does, for pytest-playwright and pytest-selenium).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def base_url() -> str:
    """``TEST_BASE_URL`` without a trailing slash; skips the test if it is not set."""
    url = os.environ.get("TEST_BASE_URL", "").strip().rstrip("/")
    if not url:
        pytest.skip(
            "base_url: TEST_BASE_URL not set: run the tests with testpool, or set it to a "
            "running server's URL"
        )
    return url
