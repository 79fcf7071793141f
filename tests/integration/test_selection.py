"""Choosing tests: several --file patterns, and `-- ARGS` handed to the runner for selection
(pytest -k/-m/node ids, go -run/-skip, {args} in a command runner's discover). The cache plans
only the selected tests and keeps their cache keys: a selection never makes a test rerun."""

from __future__ import annotations

import pytest
from support import Project

from testpool.runners.go_runner import find_go

SUITE = {
    "tests/test_alpha.py": """
        import pytest

        def test_a1():
            pass

        @pytest.mark.slow
        def test_a2():
            pass
        """,
    "tests/test_beta.py": """
        def test_b1():
            pass

        def test_b2():
            pass
        """,
    "tests/test_gamma.py": """
        def test_g1():
            pass
        """,
}
ALL = {
    "tests/test_alpha.py::test_a1",
    "tests/test_alpha.py::test_a2",
    "tests/test_beta.py::test_b1",
    "tests/test_beta.py::test_b2",
    "tests/test_gamma.py::test_g1",
}


def _suite(project: Project) -> None:
    for path, text in SUITE.items():
        project.write(path, text)
    project.write("pytest.ini", "[pytest]\nmarkers =\n    slow: a slow test\n")
    project.config()


def test_several_file_patterns_select_any_match(project: Project) -> None:
    """Regression: `-f a -f b` kept only the last pattern."""
    _suite(project)

    listed = project.run("list", "-f", "alpha", "-f", "B1").listing
    assert set(listed) == {
        "tests/test_alpha.py::test_a1",
        "tests/test_alpha.py::test_a2",
        "tests/test_beta.py::test_b1",
    }

    result = project.run("--file", "gamma", "-f", "test_b2")
    assert result.returncode == 0, result.stderr
    assert set(result.statuses) == {"tests/test_gamma.py::test_g1", "tests/test_beta.py::test_b2"}
    project.assert_clean(result.run_id)


def test_file_patterns_from_the_environment_one_per_line(project: Project) -> None:
    _suite(project)
    project.extra_env["TESTPOOL_FILE"] = "alpha\ntest_g1"

    listed = project.run("list").listing

    assert set(listed) == {
        "tests/test_alpha.py::test_a1",
        "tests/test_alpha.py::test_a2",
        "tests/test_gamma.py::test_g1",
    }


def test_pytest_selection_args_choose_the_tests(project: Project) -> None:
    _suite(project)

    by_keyword = project.run("list", "--", "-k", "b1 or g1").listing
    assert set(by_keyword) == {"tests/test_beta.py::test_b1", "tests/test_gamma.py::test_g1"}
    by_marker = project.run("list", "--", "-m", "slow").listing
    assert set(by_marker) == {"tests/test_alpha.py::test_a2"}
    by_node = project.run("list", "--", "tests/test_beta.py::test_b2", "tests/test_gamma.py")
    assert set(by_node.listing) == {"tests/test_beta.py::test_b2", "tests/test_gamma.py::test_g1"}
    # --file narrows the selection further.
    both = project.run("list", "-f", "beta", "--", "-k", "b1 or g1").listing
    assert set(both) == {"tests/test_beta.py::test_b1"}

    result = project.run("--workers", "2", "--", "-k", "alpha and not slow")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == {"tests/test_alpha.py::test_a1": "passed"}
    project.assert_clean(result.run_id)


def test_an_option_that_does_not_choose_tests_is_named(project: Project) -> None:
    """pytest's docs' `--runslow` conftest: `-- --runslow` reaches the collecting pytest only
    (-- ARGS choose tests), so the slow test is still skipped where it runs. testpool says so,
    in one line that names the option and where it belongs, and runs the selection."""
    _suite(project)
    project.write("tests/conftest.py", RUNSLOW_CONFTEST)
    result = project.run("--", "--runslow", "-k", "alpha")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "testpool: warning: -- --runslow: given to the pytest that collects the tests, not to "
        "the one that runs them (-- ARGS choose tests: paths, node ids, -k, -m, --deselect, "
        "--ignore); an option the tests need when they run goes in pytest_args"
    )
    assert result.statuses == {
        "tests/test_alpha.py::test_a1": "passed",
        "tests/test_alpha.py::test_a2": "skipped",
    }
    project.assert_clean(result.run_id)

    project.config(pytest_args=["--runslow"])
    result = project.run("--full", "--", "-k", "alpha")
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}

    # pytest's own cache is off under testpool: one line, exit 2, not a collection error.
    refused = project.run("list", "--", "--lf")
    assert (refused.returncode, refused.stderr) == (2, (
        "testpool: error: -- --lf: pytest's cache is off under testpool, whose own cache "
        "reruns what failed or changed (--full reruns everything)\n"
    )), refused.stdout  # fmt: skip


RUNSLOW_CONFTEST = """
import pytest

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False)

def pytest_collection_modifyitems(config, items):
    if not config.getoption("--runslow"):
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="need --runslow"))
"""


def test_a_selection_keeps_cache_keys_and_the_full_discovery(project: Project) -> None:
    _suite(project)
    assert project.run().returncode == 0
    full_key = project.cache()["discovery"]["pytest:tests"]["key"]

    # The tests a selection picks were cached by the full run, and stay cached.
    listed = project.run("list", "--", "-k", "beta").listing
    assert listed == {
        "tests/test_beta.py::test_b1": ("cached", "unchanged"),
        "tests/test_beta.py::test_b2": ("cached", "unchanged"),
    }
    # ...and the selection did not replace the full suite's discovery.
    assert project.cache()["discovery"]["pytest:tests"]["key"] == full_key
    assert set(project.run("list").listing) == ALL

    # A run of a selection records results the next full run uses.
    with (project.root / "tests" / "test_beta.py").open("a") as handle:
        handle.write("\n# edited\n")
    result = project.run("--", "-k", "b1")
    assert result.statuses == {"tests/test_beta.py::test_b1": "passed"}, result.stderr
    listed = project.run("list").listing
    assert listed["tests/test_beta.py::test_b1"] == ("cached", "unchanged")
    assert listed["tests/test_beta.py::test_b2"] == ("run", "test file changed")
    project.assert_clean(result.run_id)


def test_a_selection_that_matches_nothing_is_exit_5(project: Project) -> None:
    _suite(project)

    result = project.run("list", "--", "-k", "no_such_test")

    assert result.returncode == 5
    assert "no tests selected by -- -k no_such_test" in result.stderr
    project.assert_clean()


def test_a_selection_outside_the_tests_folder_is_refused(project: Project) -> None:
    _suite(project)
    project.write("other/test_elsewhere.py", "def test_e():\n    pass\n")

    result = project.run("list", "--", "other/test_elsewhere.py")

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "testpool: error: -- other/test_elsewhere.py selected tests outside 'tests' "
        "(other/test_elsewhere.py::test_e): testpool runs the tests under 'tests' only"
    )


def test_a_bad_pytest_argument_is_a_collection_error(project: Project) -> None:
    _suite(project)

    result = project.run("list", "--", "--no-such-pytest-option")

    assert result.returncode == 1
    assert "pytest could not collect the tests" in result.stderr
    assert "--no-such-pytest-option" in result.stderr


def test_an_option_value_that_is_a_double_dash_is_not_the_separator(project: Project) -> None:
    _suite(project)
    project.write(
        "tests/test_dash.py",
        "import pytest\n\n@pytest.mark.parametrize('x', ['--'])\ndef test_d(x):\n    pass\n",
    )

    listed = project.run("list", "-f", "--", "--", "-k", "test_d").listing

    assert set(listed) == {"tests/test_dash.py::test_d[--]"}


COMMAND_DISCOVER = 'for t in one two three; do case "$t" in *"$1"*) echo "$t";; esac; done'


def test_command_runner_gets_the_args_through_its_discover_placeholder(project: Project) -> None:
    project.write("tests/.keep", "")
    project.write("list.sh", COMMAND_DISCOVER + "\n")
    project.config(runner="command", discover="sh list.sh {args}", run="true {id}")

    assert set(project.run("list").listing) == {"one", "two", "three"}
    assert set(project.run("list", "--", "t").listing) == {"two", "three"}


def test_command_runner_without_the_args_placeholder_refuses_args(project: Project) -> None:
    project.write("tests/.keep", "")
    project.config(runner="command", discover="printf 'one\\ntwo\\n'", run="true {id}")

    result = project.run("list", "--", "one")

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "testpool: error: -- ARGS go to the discover command through {args}, and "
        "'discover' has none: add {args} where they belong"
    )


GO_TESTS = """
package e2e

import "testing"

func TestAlpha(t *testing.T) {}
func TestAlphaBeta(t *testing.T) {}
func TestGamma(t *testing.T) { t.Run("sub", func(t *testing.T) {}) }
"""


@pytest.mark.skipif(find_go() is None, reason="the go toolchain is not installed")
def test_go_run_and_skip_select_like_go_test(project: Project) -> None:
    project.write("go.mod", "module example.com/e2e\n\ngo 1.21\n")
    project.write("tests/api_test.go", GO_TESTS)
    project.config(runner="go", env={"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})

    def listed(*args: str) -> set[str]:
        return {name.rsplit("::", 1)[1] for name in project.run("list", "--", *args).listing}

    assert listed("-run", "Alpha") == {"TestAlpha", "TestAlphaBeta"}
    assert listed("-run=^TestAlpha$") == {"TestAlpha"}
    assert listed("-run", "Alpha", "-skip", "Beta") == {"TestAlpha"}
    assert listed("-test.run", "Gamma/sub") == {"TestGamma"}

    result = project.run("--", "-run", "Beta|Gamma", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses) == {
        "tests/api_test.go::TestAlphaBeta",
        "tests/api_test.go::TestGamma",
    }
    project.assert_clean(result.run_id)

    bad = project.run("list", "--", "-v")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "testpool: error: -- -v: the go runner selects tests with -run REGEXP and -skip REGEXP only"
    )
    bad = project.run("list", "--", "-run", "(")
    assert bad.returncode == 2
    assert "-- -run (: not a regular expression" in bad.stderr
