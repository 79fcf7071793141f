"""Shared helpers for the e2e suite: where the server is, how to talk to it, its data files.

testpool sets TEST_BASE_URL, DATA_DIR and API_TOKEN for every worker. The suite never
assumes the data is pristine: one worker runs many tests, one after another, on one DATA_DIR.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

SITES_FILE = "sites.jsonc"
STATS_FILE = "stats.json"
TIMEOUT = 10.0  # generous: the point is to fail rather than hang, not to time anything


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(
            f"{name} is not set: run this suite with testpool, or set it yourself "
            "(TEST_BASE_URL, DATA_DIR and API_TOKEN must match a running e2e/app/server.py)"
        )
    return value


def base_url() -> str:
    """The worker's server, e.g. ``http://127.0.0.1:8001`` (no trailing slash)."""
    return _env("TEST_BASE_URL").rstrip("/")


def data_dir() -> Path:
    """The worker's DATA_DIR, the folder the server reads and writes."""
    folder = Path(_env("DATA_DIR"))
    if not folder.is_dir():
        raise RuntimeError(f"DATA_DIR {str(folder)!r} is not a directory")
    return folder


def api_token() -> str:
    """The bearer token the worker's server expects."""
    return _env("API_TOKEN")


@functools.cache
def _tls() -> ssl.SSLContext:
    # httpx builds (and loads CA certificates into) a new TLS context per client, ~20-50 ms;
    # tests make a few clients each and never use TLS, so build it once.
    return ssl.create_default_context()


def client(token: str | None = None) -> httpx.Client:
    """An HTTP client for the server that sends ``token`` (default: the right one)."""
    return httpx.Client(
        base_url=base_url(),
        headers={"Authorization": f"Bearer {token if token is not None else api_token()}"},
        timeout=TIMEOUT,
        verify=_tls(),
        trust_env=False,  # the server is local: an HTTP(S)_PROXY in the environment must not apply
    )


def anon_client() -> httpx.Client:
    """An HTTP client for the server that sends no credentials."""
    return httpx.Client(base_url=base_url(), timeout=TIMEOUT, verify=_tls(), trust_env=False)


# --------------------------------------------------------------------------- data files
# Read straight from disk, independently of the server's own parser, so a test can check
# what the server actually wrote.


def sites_text() -> str:
    """The raw text of sites.jsonc, comments and all."""
    return (data_dir() / SITES_FILE).read_text(encoding="utf-8")


def read_sites() -> list[dict[str, Any]]:
    """sites.jsonc from disk, parsed."""
    value = json.loads(strip_comments(sites_text()))
    assert isinstance(value, list), f"{SITES_FILE} does not hold an array"
    return value


def read_stats() -> dict[str, int]:
    """stats.json from disk, parsed."""
    value = json.loads((data_dir() / STATS_FILE).read_text(encoding="utf-8"))
    assert isinstance(value, dict), f"{STATS_FILE} does not hold an object"
    return value


# make_site(name=None, url=None) -> the created site; see conftest.make_site.
SiteFactory = Callable[..., dict[str, Any]]


def comments(text: str) -> list[str]:
    """Every ``//`` and ``/* */`` comment in a JSONC text, in order (strings are skipped)."""
    return _scan(text)[1]


def strip_comments(text: str) -> str:
    """A JSONC text with its comments removed (trailing commas are not expected here)."""
    return _scan(text)[0]


def _scan(text: str) -> tuple[str, list[str]]:
    kept: list[str] = []
    found: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            kept.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            found.append(text[i:j].rstrip())
            i = j
        elif text.startswith("/*", i):
            j = text.index("*/", i + 2) + 2
            found.append(text[i:j])
            i = j
        else:
            kept.append(text[i])
            i += 1
    return "".join(kept), found


@contextmanager
def preserved(name: str) -> Iterator[Path]:
    """Yield the path of a data file; whatever a test does to it, put it back afterwards.

    Restores the exact bytes (or the file's absence) in a ``finally``, atomically, so the next
    test on this worker sees the data as it was.
    """
    path = data_dir() / name
    original = path.read_bytes() if path.exists() else None
    try:
        yield path
    finally:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            _atomic_write(path, original)


def _atomic_write(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_file(path: Path, text: str) -> None:
    """Replace a data file atomically, so the server never reads a half-written one."""
    _atomic_write(path, text.encode())


def counter(name: str) -> int:
    """A counter's current value as the server reports it (0 if it does not exist yet)."""
    with client() as api:
        response = api.get("/api/stats")
    response.raise_for_status()
    value = response.json().get(name, 0)
    assert isinstance(value, int)
    return value
