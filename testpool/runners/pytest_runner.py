"""The pytest runner: node ids from pytest's own collection, run in one of two modes.

- ``session`` (default): one long-lived pytest per worker collects once and runs the node ids it
  is sent (see :mod:`testpool.pytest_plugin`), with every fixture narrower than the session torn
  down after each test. A crash or timeout of that process is reported for the test it was
  running and the process is started again before the next test.
- ``process``: a fresh ``python -m pytest <node id>`` per test, for suites that need it.

Both use the interpreter running testpool (install testpool into the suite's environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.errors import DiscoveryError, NoTestsError
from testpool.execution import CannotStart, decode, run_collector, run_process
from testpool.fsutil import tail
from testpool.hashing import combine, walk_files
from testpool.results import Outcome, Status
from testpool.runners.base import ExecContext, TestCase, WorkerContext
from testpool.runners.pytest_session import OUTCOMES, PytestSession, Zygote
from testpool.workerenv import collection_env

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.hashing import FileHasher
    from testpool.runners.base import Executor, WorkerExecutor
    from testpool.state import RunScope

PLUGIN = "testpool.pytest_plugin"
INI_FILES = ("pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "conftest.py")
DISCOVERY_TIMEOUT = 600.0
# Changes when discovery records more about each test (format 2: requirements and markers),
# so that an older collection is redone once rather than read back without them.
DISCOVERY_FORMAT = "2"


def _is_test_file(name: str) -> bool:
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


class PytestRunner:
    name = "pytest"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.root

    # --- discovery --------------------------------------------------------------------------

    def base_args(self) -> list[str]:
        return [
            sys.executable, "-m", "pytest",
            "-p", PLUGIN,
            "-p", "no:cacheprovider",
            "--rootdir", str(self.root),
        ]  # fmt: skip

    def discover(self, scope: RunScope) -> list[TestCase]:
        collect_file = scope.folder() / "collect.json"
        argv = [
            *self.base_args(), "--collect-only", "-q",
            str(self.config.tests_path), *self.config.pytest_args,
        ]  # fmt: skip
        env = collection_env({**os.environ, **self.config.env}, configured=self.config.env)
        env["TESTPOOL_COLLECT_FILE"] = str(collect_file)
        try:
            returncode, stdout, stderr = run_collector(
                argv, cwd=self.root, env=env, timeout=DISCOVERY_TIMEOUT, scope=scope
            )
        except subprocess.TimeoutExpired:
            raise DiscoveryError("pytest collection took too long") from None
        output = decode(stdout + stderr).strip()
        if returncode == 5:
            raise NoTestsError(f"pytest collected no tests under {self.config.tests}")
        try:
            collected = json.loads(collect_file.read_text())
            collect_file.unlink()
        except (OSError, ValueError):
            collected = None
        if returncode != 0 or not collected or collected.get("errors"):
            raise DiscoveryError(
                f"pytest could not collect the tests (exit status {returncode})",
                detail=tail(output, 30),
            )
        cases = []
        for nodeid, module_file, defined_in, requires, markers in collected["items"]:
            sources = (defined_in,) if defined_in and defined_in != module_file else ()
            cases.append(TestCase(nodeid, module_file, sources, tuple(requires), tuple(markers)))
        return cases

    def discovery_key(self, hasher: FileHasher) -> str | None:
        parts = [
            hasher.tree(self.config.tests_path),
            hasher.files(self.helper_files()),  # conftest.py files above `tests`, ini files
            json.dumps(self.config_inputs(), sort_keys=True),
            json.dumps(list(self.config.pytest_args)),
            json.dumps(dict(sorted(self.config.env.items()))),
            sys.version,
            DISCOVERY_FORMAT,
        ]
        return combine(parts)

    # --- cache inputs -----------------------------------------------------------------------

    def own_files(self, case: TestCase) -> list[Path]:
        return [self.root / name for name in (case.file, *case.sources) if name]

    def helper_files(self) -> list[Path]:
        tests = self.config.tests_path
        helpers = [path for path in walk_files(tests) if not _is_test_file(path.name)]
        # conftest.py files between the root and the tests folder apply too.
        for folder in tests.parents:
            if folder == self.root or not folder.is_relative_to(self.root):
                break
            helpers.append(folder / "conftest.py")
        return helpers + self._root_ini_files()

    def _root_ini_files(self) -> list[Path]:
        return [self.root / name for name in INI_FILES]

    def config_inputs(self) -> dict[str, Any]:
        pyproject = self.root / "pyproject.toml"
        try:
            document = tomllib.loads(pyproject.read_text())
        except (OSError, ValueError):  # unreadable, not UTF-8, not TOML
            return {}
        return {"pytest_ini_options": document.get("tool", {}).get("pytest", {})}

    # --- execution --------------------------------------------------------------------------

    def executor(self, context: ExecContext) -> Executor:
        return PytestExecutor(self, context)


class PytestExecutor:
    def __init__(self, runner: PytestRunner, context: ExecContext) -> None:
        self.runner = runner
        self.context = context
        self.zygote: Zygote | None = None
        if runner.config.pytest_mode == "session":
            self.zygote = Zygote(runner, context)

    async def warm_up(self) -> None:
        if self.zygote is not None:
            await self.zygote.spawn()  # collects while tmux and the servers start

    async def prepare(self, cases: list[TestCase]) -> dict[str, Outcome]:
        return {}

    def for_worker(self, worker: WorkerContext) -> WorkerExecutor:
        if self.zygote is None:
            return PytestProcess(self.runner, self.context, worker)
        return PytestSession(self.zygote, worker)

    async def close(self) -> None:
        if self.zygote is not None:
            await self.zygote.close()


class PytestProcess:
    """One ``python -m pytest <node id>`` per test."""

    def __init__(self, runner: PytestRunner, context: ExecContext, worker: WorkerContext) -> None:
        self.runner = runner
        self.context = context
        self.worker = worker

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, case: TestCase, timeout: float) -> Outcome:
        result_file = self.context.scratch / f"result-{self.worker.index}-{uuid.uuid4().hex}.json"
        argv = [*self.runner.base_args(), "-q", case.id, *self.runner.config.pytest_args]
        env = {**self.worker.env, "TESTPOOL_RESULT_FILE": str(result_file)}
        try:
            result = await run_process(
                argv, cwd=self.runner.root, env=env, timeout=timeout, tracker=self.context.tracker
            )
        except CannotStart as error:
            return Outcome(Status.FAILED, 0.0, "", f"cannot run pytest: {error}")
        output = decode(result.output)
        try:
            verdict = json.loads(result_file.read_text())
            result_file.unlink()
        except (OSError, ValueError):
            verdict = None
        if result.timed_out:
            return Outcome(
                Status.TIMEOUT, result.duration, output, f"timed out after {timeout:g} s"
            )
        if verdict is None or (result.returncode in (4, 5) and verdict["outcome"] == "passed"):
            return Outcome(
                Status.FAILED,
                result.duration,
                output,
                f"pytest exited with status {result.returncode} without a result for this test",
            )
        return Outcome(
            OUTCOMES.get(verdict["outcome"], Status.FAILED),
            result.duration,
            output,
            verdict.get("message", ""),
        )
