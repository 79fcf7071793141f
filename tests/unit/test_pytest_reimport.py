"""Who read a per-worker variable while pytest collected: noting the reads, sorting the readers."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest

from testpool import pytest_reimport
from testpool.pytest_reimport import (
    Read,
    Stuck,
    describe,
    readers_for,
    sort_reads,
    still_stuck,
)


@pytest.fixture
def watching() -> Iterator[None]:
    pytest_reimport.watch(["TEST_BASE_URL", "TESTPOOL_WORKER"])
    try:
        yield
    finally:
        pytest_reimport.stop_watching()


def _load(path: Path, text: str) -> ModuleType:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[path.stem]
    return module


def test_reads_at_import_name_the_module_and_its_line(watching: None, tmp_path: Path) -> None:
    path = tmp_path / "reader_mod.py"
    _load(
        path,
        """
        import os
        A = os.environ.get("TEST_BASE_URL")
        B = os.getenv("TEST_BASE_URL")
        C = "TESTPOOL_WORKER" in os.environ
        D = os.environ.get("HOME")

        class Body:
            E = os.environ.get("TEST_BASE_URL")
        """,
    )

    reads = pytest_reimport.stop_watching()

    assert type(os.environ) is os._Environ
    mine = [read for read in reads if read.frames[-1][0] == str(path)]
    assert {(read.name, read.frames[0][1]) for read in mine} == {
        ("TEST_BASE_URL", 2), ("TEST_BASE_URL", 3), ("TESTPOOL_WORKER", 4), ("TEST_BASE_URL", 8),
    }  # fmt: skip
    assert all(read.at_import for read in mine)
    body = next(read for read in mine if read.frames[0][1] == 8)
    assert body.frames == ((str(path), 8), (str(path), 7)), "the class body, then the module"


def test_nothing_is_noted_once_watching_stops(tmp_path: Path) -> None:
    pytest_reimport.watch(["TEST_BASE_URL"])
    assert pytest_reimport.stop_watching() == []

    _load(tmp_path / "late_mod.py", "import os\nA = os.environ.get('TEST_BASE_URL')\n")

    assert pytest_reimport.stop_watching() == []
    assert type(os.environ) is os._Environ


def test_a_helper_called_at_import_is_read_through_the_module_that_calls_it(
    watching: None, tmp_path: Path
) -> None:
    helper = _load(
        tmp_path / "helper_mod.py",
        "import os\ndef base():\n    return os.environ.get('TEST_BASE_URL')\n",
    )
    sys.modules["helper_mod"] = helper
    try:
        _load(tmp_path / "caller_mod.py", "import helper_mod\nBASE = helper_mod.base()\n")
    finally:
        del sys.modules["helper_mod"]

    reads = pytest_reimport.stop_watching()

    read = next(read for read in reads if read.frames[-1][0].endswith("caller_mod.py"))
    assert read.frames == (
        (str(tmp_path / "helper_mod.py"), 3),
        (str(tmp_path / "caller_mod.py"), 2),
    )
    assert read.at_import


TEST_FILE = "/project/tests/test_api.py"
HELPERS = "/project/tests/helpers.py"
CONFTEST = "/project/tests/conftest.py"
PYTEST = "/venv/site-packages/_pytest/python.py"


def _sort(reads: list[Read]) -> tuple[dict[Any, set[str]], list[Stuck]]:
    module = cast(pytest.Module, "test_api module")
    return sort_reads(reads, {pytest_reimport.file_key(TEST_FILE): [module]})


def test_a_test_module_anywhere_on_the_way_makes_it_stale() -> None:
    stale, stuck = _sort(
        [
            Read("TEST_BASE_URL", ((TEST_FILE, 3),), True),
            Read("PORT", ((HELPERS, 9), (TEST_FILE, 4)), True),  # a helper it calls at import
            Read("DATA_DIR", ((TEST_FILE, 20), (PYTEST, 100), ("<frozen runpy>", 1)), False),
        ]
    )

    assert stale == {"test_api module": {"TEST_BASE_URL", "PORT", "DATA_DIR"}}
    assert stuck == []


def test_other_readers_are_stuck_with_their_top_level_line_or_the_line_that_read() -> None:
    stale, stuck = _sort(
        [
            Read("TEST_BASE_URL", ((HELPERS, 2),), True),  # imported by the test module
            Read("TEST_BASE_URL", ((HELPERS, 9), (CONFTEST, 5)), True),
            Read("API_TOKEN", ((CONFTEST, 7),), True),
            Read("PORT", ((CONFTEST, 30), (PYTEST, 100)), False),  # a hook of the conftest
        ]
    )

    assert stale == {}
    assert stuck == [
        Stuck(CONFTEST, 5, ("API_TOKEN", "PORT", "TEST_BASE_URL"), True),
        Stuck(HELPERS, 2, ("TEST_BASE_URL",), True),
    ]


def test_a_conftest_is_named_for_the_tests_below_it_and_any_other_reader_for_all() -> None:
    conftest = Stuck(CONFTEST, 5, ("TEST_BASE_URL",), True)
    deeper = Stuck("/project/tests/api/conftest.py", 2, ("PORT",), True)
    plugin = Stuck("/venv/site-packages/plugin.py", 8, ("DATA_DIR",), False)
    item = cast(pytest.Item, SimpleNamespace(path=Path(TEST_FILE)))

    assert readers_for(item, [conftest, deeper, plugin]) == ([conftest], [plugin])
    root = Path("/project")
    assert describe(conftest, root, line=False) == "tests/conftest.py read TEST_BASE_URL at import"
    assert describe(plugin, root, line=True) == f"{plugin.path} (line 8) read DATA_DIR"


def test_modules_imported_again_by_watch_are_stuck_only_if_they_read_again() -> None:
    conftest = Stuck(CONFTEST, 5, ("TEST_BASE_URL",), True)
    helpers = Stuck(HELPERS, 2, ("TEST_BASE_URL",), True)
    hook = Stuck(CONFTEST, 30, ("PORT",), False)

    # helpers.py was imported again and no longer reads; the conftest's hook read again.
    assert still_stuck([conftest, helpers], [hook], [HELPERS]) == [
        Stuck(CONFTEST, 5, ("PORT", "TEST_BASE_URL"), True)
    ]
    # It reads something else now: what it reads now, not what it read before.
    now = Stuck(HELPERS, 3, ("DATA_DIR",), True)
    assert still_stuck([conftest, helpers], [now], [HELPERS]) == [conftest, now]


def test_the_watched_environ_is_restored_even_if_code_replaced_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = os.environ
    pytest_reimport.watch(["TEST_BASE_URL"])
    monkeypatch.setattr(os, "environ", dict(real))  # as a conftest might

    pytest_reimport.stop_watching()

    assert type(real) is os._Environ
