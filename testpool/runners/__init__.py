"""One module per runner (pytest, go, command) behind the small interface in ``base``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.runners.base import Runner


def make_runner(config: Config) -> Runner:
    """The runner the configuration asks for. Called once per command by the CLI's pipeline."""
    if config.runner == "pytest":
        from testpool.runners.pytest_runner import PytestRunner

        return PytestRunner(config)
    if config.runner == "go":
        from testpool.runners.go_runner import GoRunner

        return GoRunner(config)
    from testpool.runners.command_runner import CommandRunner

    return CommandRunner(config)
