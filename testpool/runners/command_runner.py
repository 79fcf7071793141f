"""The command runner: any test framework, through two shell commands.

``discover`` prints one test id per line; ``run`` is a template in which ``{id}`` is replaced by
the (shell-quoted) id. Exit status 0 is a pass, 77 a skip (the automake convention), anything
else a failure. An id of the form ``path::name`` whose ``path`` is a file under the root ties
the test to that file for the cache.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.errors import ConfigError, DiscoveryError, NoTestsError
from testpool.execution import ProcessResult, decode, run_collector
from testpool.fsutil import tail
from testpool.placeholders import (
    collection_values,
    render,
    render_env,
    run_values,
    used,
    worker_values,
)
from testpool.procs import RUN_ID_VARIABLE
from testpool.results import Status
from testpool.runners.base import ExecContext, TestCase, WorkerContext
from testpool.runners.process import ProcessPerTest

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.hashing import FileHasher
    from testpool.results import Outcome
    from testpool.runners.base import Executor, WorkerExecutor
    from testpool.state import RunScope

SKIP_STATUS = 77
DISCOVERY_TIMEOUT = 600.0
SHELL = "/bin/sh"


class CommandRunner:
    name = "command"

    def __init__(self, config: Config, selection: tuple[str, ...] = ()) -> None:
        self.config = config
        self.root = config.root
        self.selection = selection
        self.skipped_files: list[tuple[str, str]] = []
        if selection and "args" not in used(config.discover or ""):
            raise ConfigError(
                "-- ARGS go to the discover command through {args}, and 'discover' has none: "
                "add {args} where they belong"
            )

    def notes(self) -> list[str]:
        return []

    def discover(self, scope: RunScope) -> list[TestCase]:
        assert self.config.discover is not None
        values = {**run_values(scope.run_id), "args": shlex.join(self.selection)}
        command = render(self.config.discover, values, shell=True, verbatim=("args",))
        try:
            returncode, output, errors = run_collector(
                [SHELL, "-c", command], cwd=self.root, env=self._env(scope.run_id),
                timeout=DISCOVERY_TIMEOUT, scope=scope,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DiscoveryError("the discover command took too long") from None
        if returncode != 0:
            raise DiscoveryError(
                f"the discover command failed (exit status {returncode}): {command}",
                detail=tail(decode(output + errors), 30),
            )
        seen: dict[str, TestCase] = {}
        for test_id in parse_ids(output, command):
            if test_id not in seen:
                seen[test_id] = TestCase(test_id, self._file_of(test_id))
        if not seen:
            raise NoTestsError(f"the discover command printed no test ids: {command}")
        return list(seen.values())

    def _env(self, run_id: str) -> dict[str, str]:
        import os

        # No worker exists yet: per-worker values in `env` get their stand-ins.
        return {
            **os.environ,
            **render_env(self.config.env, collection_values(run_id, self.config.services)),
        }

    def _file_of(self, test_id: str) -> str:
        """The file a test id names: ``path::name``, or an id that is itself a file's path
        (a runner whose tests are files)."""
        candidate = test_id.split("::", 1)[0]
        try:
            return candidate if (self.root / candidate).is_file() else ""
        except OSError:  # a name too long to be a path
            return ""

    def discovery_key(self, hasher: FileHasher) -> str | None:
        return None  # the command may depend on anything: always ask it

    def own_files(self, case: TestCase) -> list[Path]:
        return [self.root / case.file] if case.file else []

    def shared_digest(self, case: TestCase, hasher: FileHasher) -> str:
        return "none"  # nothing is known of what a command's test uses

    def shared_manifest(self, case: TestCase, hasher: FileHasher) -> dict[str, str]:
        return {}

    def helper_files(self) -> list[Path]:
        return []

    def config_inputs(self) -> dict[str, Any]:
        return {}

    def executor(self, context: ExecContext) -> Executor:
        return CommandExecutor(self, context)


def parse_ids(output: bytes, command: str) -> list[str]:
    """The ids a discover command printed: one per line, split on line feeds only (an id may
    hold any other character), surrounding blanks trimmed, empty lines skipped.

    Ids are passed on a command line later, so output that cannot be one is refused here.
    """
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as error:
        where = output[: error.start].count(b"\n") + 1
        raise DiscoveryError(
            f"the discover command printed bytes that are not UTF-8 (line {where}); "
            f"test ids must be UTF-8 text: {command}"
        ) from None
    ids = []
    for number, line in enumerate(text.split("\n"), start=1):
        if "\0" in line:
            raise DiscoveryError(
                f"the discover command printed a NUL character (line {number}); test ids are "
                f"one per line and cannot hold NUL (find -print0?): {command}"
            )
        test_id = line.strip(" \t\r")
        if test_id:
            ids.append(test_id)
    return ids


class CommandExecutor:
    def __init__(self, runner: CommandRunner, context: ExecContext) -> None:
        self.runner = runner
        self.context = context

    async def warm_up(self) -> None:
        return None

    async def prepare(self, cases: list[TestCase]) -> dict[str, Outcome]:
        return {}

    def for_worker(self, worker: WorkerContext) -> WorkerExecutor:
        values = worker_values(
            self.context.common_env[RUN_ID_VARIABLE], worker.index, worker.port, worker.data_dir
        )
        return ProcessPerTest(
            self.context, worker, lambda case: self._build(case, values), _interpret
        )

    async def close(self) -> None:
        return None

    def _build(self, case: TestCase, values: Mapping[str, str]) -> tuple[Sequence[str], Path]:
        assert self.runner.config.run is not None
        # One pass: an id holding "{port}" is never expanded (and is quoted for the shell).
        command = render(self.runner.config.run, {**values, "id": case.id}, shell=True)
        return [SHELL, "-c", command], self.runner.root


def _interpret(case: TestCase, result: ProcessResult, output: str) -> tuple[Status, str]:
    if result.returncode == 0:
        return Status.PASSED, ""
    if result.returncode == SKIP_STATUS:
        return Status.SKIPPED, ""
    return Status.FAILED, f"exit status {result.returncode}"
