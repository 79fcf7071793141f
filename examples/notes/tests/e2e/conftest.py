"""The API under test: SERVER_URL, or the development server's address."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    base = os.environ.get("SERVER_URL", "http://localhost:8888/api")
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client
