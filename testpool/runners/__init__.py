"""One module per runner (pytest, go, command) behind the small interface in ``base``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.runners.base import Runner


def make_runner(config: Config, selection: Sequence[str] = ()) -> Runner:
    """The runner the configuration asks for. Called once per command by the CLI's pipeline.

    ``selection`` is the command line's ``-- ARGS``: the runner's own way to choose tests
    (pytest's ``-k``, ``-m`` and node ids; go's ``-run``; a command runner's ``{args}``).
    Arguments a runner cannot use are a :class:`~testpool.errors.ConfigError` here."""
    if config.runner == "pytest":
        from testpool.runners.pytest_runner import PytestRunner

        return PytestRunner(config, tuple(selection))
    if config.runner == "go":
        from testpool.runners.go_runner import GoRunner

        return GoRunner(config, tuple(selection))
    from testpool.runners.command_runner import CommandRunner

    return CommandRunner(config, tuple(selection))
