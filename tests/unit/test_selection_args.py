"""Which pytest ``-- ARGS`` choose tests, and which only reach the collecting pytest."""

from __future__ import annotations

import pytest

from testpool.errors import ConfigError
from testpool.runners.pytest_runner import not_selecting


@pytest.mark.parametrize(
    ("args", "unused"),
    [
        ((), []),
        (("tests/test_a.py", "tests/test_b.py::test_x[a-b]"), []),
        (("-k", "b1 or g1", "-m", "slow"), []),
        (("-kb1", "-mslow", "--deselect=tests/a.py::t", "--ignore", "tests/old"), []),
        (("--ignore-glob", "*_old.py", "-k", "-x"), []),  # -x is -k's value here
        (("--runslow",), ["--runslow"]),
        (("-x", "-k", "fast", "-v"), ["-x", "-v"]),
        (("-p", "no:randomly", "--env=staging"), ["-p", "--env=staging"]),
        (("--pyargs", "mypkg.tests"), []),
        (("-k", "a", "--", "-x", "--odd"), []),  # after --, paths
        (("-xk", "-v", "-vm", "slow"), ["-xk", "-vm"]),  # -x with -k "-v", -v with -m "slow"
        (("-xkfast",), ["-xkfast"]),
        (("tests/x.py::test[-1]", "-m", "a and b"), []),
    ],
)
def test_options_that_do_not_choose_tests(args: tuple[str, ...], unused: list[str]) -> None:
    assert not_selecting(args) == unused


@pytest.mark.parametrize("option", ["--lf", "--sw", "--failed-first", "--lfnf=all"])
def test_pytest_cache_options_are_refused(option: str) -> None:
    with pytest.raises(ConfigError, match="pytest's cache is off under testpool"):
        not_selecting(("-k", "a", option))
