"""The cache reruns the tests a change can affect, and only those: a pytest module with the
conftests and helper modules it imports; a Go test with its package's shared test code."""

from __future__ import annotations

import pytest
from support import Project

from testpool.runners.go_runner import find_go


def _pytest_suite(project: Project, **config: object) -> None:
    project.write("tests/conftest.py", "")
    project.write("tests/helpers/__init__.py", "")
    project.write("tests/helpers/db.py", "def connect():\n    return 'db'\n")
    project.write("tests/helpers/api.py", "def call():\n    return 'api'\n")
    project.write(
        "tests/test_db.py",
        "from helpers.db import connect\n\ndef test_db():\n    assert connect()\n",
    )
    project.write(
        "tests/test_api.py", "from helpers import api\n\ndef test_api():\n    assert api.call()\n"
    )
    project.write("tests/admin/conftest.py", "")
    project.write("tests/admin/test_admin.py", "def test_admin():\n    pass\n")
    project.write(
        "tests/test_dynamic.py",
        """
        import importlib

        NAME = "helpers." + "db"

        def test_dynamic():
            assert importlib.import_module(NAME).connect()
        """,
    )
    project.write("tests/data/users.json", "[]\n")
    project.config(**config)
    assert project.run().returncode == 0


def _reruns(project: Project) -> dict[str, str]:
    return {
        test: reason
        for test, (what, reason) in project.run("list").listing.items()
        if what == "run"
    }


def _explained(project: Project, test: str) -> list[str]:
    """The files `testpool explain` names under "shared test code changed"."""
    result = project.run("explain", test)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "shared test code changed (" in line]
    return line.split("): ", 1)[1].split(", ")


def test_editing_a_helper_module_reruns_the_tests_that_import_it(project: Project) -> None:
    _pytest_suite(project)

    project.write("tests/helpers/db.py", "def connect():\n    return 'db2'\n")
    assert _explained(project, "test_db.py") == ["tests/helpers/db.py (modified)"]

    assert _reruns(project) == {
        "tests/test_db.py::test_db": "shared test code changed",
        # It imports by a name built at run time: it may run any module, so it reruns.
        "tests/test_dynamic.py::test_dynamic": "shared test code changed",
    }
    result = project.run()
    assert {t for t, s in result.statuses.items() if s != "cached"} == {
        "tests/test_db.py::test_db",
        "tests/test_dynamic.py::test_dynamic",
    }
    project.assert_clean(result.run_id)


def test_a_conftest_reruns_the_tests_below_it(project: Project) -> None:
    _pytest_suite(project)

    project.write("tests/admin/conftest.py", "import pytest\n")

    assert _reruns(project) == {
        "tests/admin/test_admin.py::test_admin": "shared test code changed",
        "tests/test_dynamic.py::test_dynamic": "shared test code changed",  # may run anything
    }


def test_a_data_file_still_reruns_everything(project: Project) -> None:
    _pytest_suite(project)

    project.write("tests/data/users.json", '[{"name": "a"}]\n')

    assert set(_reruns(project).values()) == {"helpers changed"}
    assert len(_reruns(project)) == 4


def test_an_explicit_helpers_list_keeps_its_meaning(project: Project) -> None:
    _pytest_suite(project, helpers=["tests/helpers/api.py"])

    project.write("tests/helpers/api.py", "def call():\n    return 'api2'\n")

    reruns = _reruns(project)
    assert len(reruns) == 4
    assert reruns["tests/admin/test_admin.py::test_admin"] == "helpers changed"
    assert reruns["tests/test_api.py::test_api"] == "shared test code changed"


GO_MOD = "module example.com/e2e\n\ngo 1.21\n"
GO_A = """package e2e

import "testing"

func TestA1(t *testing.T) {
	if greeting() != "hi" {
		t.Fatal("greeting")
	}
}

func TestA2(t *testing.T) {}

func localHelper() int { return 1 }
"""
GO_B = """package e2e

import "testing"

func TestB(t *testing.T) {
	if localHelper() != 1 {
		t.Fatal("helper")
	}
}
"""
GO_SHARED = """package e2e

func greeting() string { return "hi" }
"""


@pytest.mark.skipif(find_go() is None, reason="the go toolchain is not installed")
def test_go_reruns_a_files_tests_or_the_package_when_shared_code_changes(
    project: Project,
) -> None:
    project.write("go.mod", GO_MOD)
    project.write("tests/a_test.go", GO_A)
    project.write("tests/b_test.go", GO_B)
    project.write("tests/shared_test.go", GO_SHARED)
    project.config(runner="go", env={"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})
    first = project.run(timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert project.run("list").listing["tests/b_test.go::TestB"] == ("cached", "unchanged")

    # A test's body: that file's tests only.
    project.write("tests/b_test.go", GO_B.replace('t.Fatal("helper")', 't.Fatalf("helper %d", 1)'))
    assert _reruns(project) == {"tests/b_test.go::TestB": "test file changed"}
    result = project.run(timeout=600)
    assert {t for t, s in result.statuses.items() if s != "cached"} == {"tests/b_test.go::TestB"}

    # Code outside the tests' bodies (a helper in a test file, a file without tests): all.
    project.write("tests/a_test.go", GO_A.replace("return 1", "return 1 + 0"))
    assert _reruns(project) == {
        "tests/a_test.go::TestA1": "test file changed",
        "tests/a_test.go::TestA2": "test file changed",
        "tests/b_test.go::TestB": "shared test code changed",
    }
    # explain names the file whose shared part changed (not b_test.go, whose body did).
    assert _explained(project, "TestB") == ["tests/a_test.go (modified)"]
    assert project.run(timeout=600).returncode == 0
    project.write("tests/shared_test.go", GO_SHARED.replace('"hi"', '"hi" + ""'))
    assert set(_reruns(project).values()) == {"shared test code changed"}
    assert len(_reruns(project)) == 3
    assert _explained(project, "TestB") == ["tests/shared_test.go (modified)"]
    project.assert_clean(result.run_id, first.run_id)
