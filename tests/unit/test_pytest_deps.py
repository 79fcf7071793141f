"""The static import analysis behind the pytest cache's per-test inputs: what a test module can
run, and the cases where it cannot tell (then: every Python file of the tests folder)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testpool.runners.pytest_deps import ImportGraph


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "conftest.py": "",
        "app/models.py": "X = 1\n",
        "tests/conftest.py": "import support.fixtures\npytest_plugins = ['plug']\n",
        "tests/plug.py": "",
        "tests/support/__init__.py": "",
        "tests/support/fixtures.py": "from .db import connect\n",
        "tests/support/db.py": "import sqlite3\n",
        "tests/helpers.py": "import json\nfrom app import models\n",
        "tests/other_helper.py": "",
        "tests/api/test_users.py": "import helpers\nimport httpx\nfrom app.models import X\n",
        "tests/api/test_plain.py": "import os\n",
        "tests/api/test_relative.py": "from . import util\n",
        "tests/api/__init__.py": "",
        "tests/api/util.py": "",
        "tests/test_cycle_a.py": "import cycle_b\n",
        "tests/cycle_b.py": "import test_cycle_a\nimport other_helper\n",
        "tests/test_optional.py": "try:\n    import not_installed_at_all\nexcept ImportError:\n    pass\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def deps(root: Path, module: str) -> set[str]:
    graph = ImportGraph(root, root / "tests")
    return {p.relative_to(root).as_posix() for p in graph.dependencies([root / module])}


PATH_FILES = {
    "conftest.py",
    "__init__.py",
    "tests/conftest.py",
    "tests/__init__.py",
    "tests/plug.py",
    "tests/support/__init__.py",
    "tests/support/fixtures.py",
    "tests/support/db.py",
}


def test_imports_conftests_packages_and_plugins(root: Path) -> None:
    assert deps(root, "tests/api/test_users.py") == PATH_FILES | {
        "tests/api/conftest.py",
        "tests/api/__init__.py",
        "tests/helpers.py",  # found from the test's folder upward, as pytest's sys.path has it
    }


def test_a_test_that_imports_no_helper_depends_on_its_path_only(root: Path) -> None:
    assert deps(root, "tests/api/test_plain.py") == PATH_FILES | {
        "tests/api/conftest.py",
        "tests/api/__init__.py",
    }


def test_relative_imports_and_cycles(root: Path) -> None:
    assert "tests/api/util.py" in deps(root, "tests/api/test_relative.py")
    cycle = deps(root, "tests/test_cycle_a.py")
    assert {"tests/cycle_b.py", "tests/other_helper.py"} <= cycle
    assert "tests/test_cycle_a.py" not in cycle


def test_an_optional_import_that_is_missing_is_ignored(root: Path) -> None:
    assert "tests/helpers.py" not in deps(root, "tests/test_optional.py")


@pytest.mark.parametrize(
    "source",
    [
        "import not_installed_anywhere_xyz\n",  # a sys.path trick may point it anywhere
        "import importlib\nmod = importlib.import_module(NAME)\n",
        "exec(open('x.py').read())\n",
        "pytest_plugins = [NAME]\n",
        "def broken(:\n",
    ],
)
def test_what_cannot_be_read_for_sure_depends_on_every_python_file(root: Path, source: str) -> None:
    (root / "tests" / "test_opaque.py").write_text(source)
    found = deps(root, "tests/test_opaque.py")
    assert {"tests/helpers.py", "tests/other_helper.py", "tests/api/test_users.py"} <= found


def test_a_literal_dynamic_import_is_an_import(root: Path) -> None:
    (root / "tests" / "test_literal.py").write_text(
        "import importlib\nhelpers = importlib.import_module('helpers')\n"
    )
    found = deps(root, "tests/test_literal.py")
    assert "tests/helpers.py" in found
    assert "tests/other_helper.py" not in found


def test_a_module_on_a_path_a_conftest_added_is_found_anywhere_in_the_tests_folder(
    root: Path,
) -> None:
    (root / "tests" / "lib").mkdir()
    (root / "tests" / "lib" / "factories.py").write_text("")
    (root / "tests" / "test_factories.py").write_text("import factories\n")
    assert "tests/lib/factories.py" in deps(root, "tests/test_factories.py")


def test_application_modules_are_left_to_inputs(root: Path) -> None:
    assert not any(name.startswith("app/") for name in deps(root, "tests/api/test_users.py"))
