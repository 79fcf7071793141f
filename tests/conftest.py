"""Fixtures shared by testpool's own tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import Project


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
