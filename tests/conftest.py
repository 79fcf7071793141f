"""Fixtures shared by testpool's own tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
from support import Project

if TYPE_CHECKING:
    from browser import Browser


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A throwaway project in its own TMPDIR, state folder and port block.

    The finalizer reaps whatever a failing test left behind and never raises, so a cleanup
    problem cannot hide the real failure; tests assert cleanliness themselves.
    """
    made = Project.create(tmp_path)
    yield made
    with contextlib.suppress(Exception):
        subprocess.run(
            made.command("clean"), cwd=made.root, env=made.env(), capture_output=True, timeout=60
        )
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if (
                proc.environ().get("TMPDIR") == str(made.tmp)
                and "TESTPOOL_RUN_ID" in proc.environ()
            ):
                proc.kill()
    with contextlib.suppress(Exception):
        shutil.rmtree(made.tmp, ignore_errors=True)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free port with its own folder, stopped after the test.

    Skipped where redis-server is not installed, except in CI (TESTPOOL_REQUIRE_REDIS=1), where
    its absence is a failure: .ci/run installs it.
    """
    import os
    import socket

    from support import wait_until

    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("TESTPOOL_REQUIRE_REDIS"):
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    folder = tmp_path / "redis"
    folder.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
        return False

    try:
        wait_until(answers, timeout=20, what="redis-server to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A real headless Chromium (Debian's ``chromium``), shared by a module's tests and stopped
    after them. Skipped where it is not installed, except in CI (TESTPOOL_REQUIRE_CHROMIUM=1),
    where its absence is a failure: .ci/run installs it."""
    import os

    from browser import Browser, chromium

    binary = chromium()
    if binary is None:
        if os.environ.get("TESTPOOL_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    with Browser(binary) as running:
        yield running


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
