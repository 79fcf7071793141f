"""Fixtures for the e2e suite (``helpers`` is importable because pytest puts e2e/ on sys.path)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import helpers
import httpx
import pytest
from helpers import SiteFactory


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    """A client that sends the worker's bearer token."""
    with helpers.client() as client:
        yield client


@pytest.fixture
def anon() -> Iterator[httpx.Client]:
    """A client that sends no credentials."""
    with helpers.anon_client() as client:
        yield client


@pytest.fixture
def data_dir() -> Path:
    """The worker's DATA_DIR."""
    return helpers.data_dir()


@pytest.fixture
def unique_name() -> str:
    """A name no other test (on any worker, in any run) will use."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_url(unique_name: str) -> str:
    """A site URL no other test will use (duplicate URLs are rejected)."""
    return f"https://{unique_name}.example.test/"


@pytest.fixture
def make_site(api: httpx.Client) -> Iterator[SiteFactory]:
    """Create sites through the API; the ones still there are deleted after the test.

    Cleaning up keeps a long-lived worker's sites.jsonc from growing without bound; tests
    must still not rely on any other test having cleaned up.
    """
    created: list[str] = []

    def make(name: str | None = None, url: str | None = None) -> dict[str, Any]:
        token = uuid.uuid4().hex[:12]
        payload = {
            "name": name if name is not None else f"e2e-{token}",
            "url": url if url is not None else f"https://e2e-{token}.example.test/",
        }
        response = api.post("/api/sites", json=payload)
        assert response.status_code == 201, response.text
        site: dict[str, Any] = response.json()
        created.append(site["id"])
        return site

    yield make
    for site_id in created:
        with suppress(httpx.HTTPError):
            api.delete(f"/api/sites/{site_id}")
