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
import shlex
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.errors import ConfigError, DiscoveryError, NoTestsError
from testpool.execution import CannotStart, decode, run_collector, run_process
from testpool.fsutil import tail
from testpool.hashing import combine, walk_files
from testpool.placeholders import collection_values, render_env
from testpool.results import Outcome, Status
from testpool.runners.base import ExecContext, TestCase, WorkerContext
from testpool.runners.pytest_deps import ImportGraph
from testpool.runners.pytest_session import OUTCOMES, PytestSession, Zygote
from testpool.scaffold import JS_TEST
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
DISCOVERY_FORMAT = "3"
# pytest's options that choose tests at collection (with the ones taking a separate value),
# the point of `-- ARGS`; any other option there reaches the collecting pytest only.
SELECTING = {"-k", "-m", "--deselect", "--ignore", "--ignore-glob"}
# pytest's cacheprovider options: testpool runs pytest without it.
PYTEST_CACHE_OPTIONS = {
    "--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--sw",
    "--stepwise", "--sw-skip", "--stepwise-skip", "--sw-reset", "--stepwise-reset", "--lfnf",
    "--last-failed-no-failures", "--cache-show", "--cache-clear",
}  # fmt: skip


def case_of(entry: list[Any]) -> TestCase:
    """A test from the plugin's description of it (``pytest_plugin.describe``)."""
    nodeid, module_file, defined_in, requires, markers = entry
    sources = (defined_in,) if defined_in and defined_in != module_file else ()
    return TestCase(nodeid, module_file, sources, tuple(requires), tuple(markers))


def _is_test_file(name: str) -> bool:
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


class PytestRunner:
    name = "pytest"

    def __init__(self, config: Config, selection: tuple[str, ...] = ()) -> None:
        self.config = config
        self.root = config.root
        self.selection = selection
        self._unused = not_selecting(selection)  # (a ConfigError for what pytest cannot take)
        self.skipped_files: list[tuple[str, str]] = []  # (file, reason): skipped at import
        self._graph: ImportGraph | None = None
        self._shared: dict[tuple[Path, ...], str] = {}

    def notes(self) -> list[str]:
        if not self._unused:
            return []
        return [
            f"-- {' '.join(self._unused)}: given to the pytest that collects the tests, not to the "
            "one that runs them (-- ARGS choose tests: paths, node ids, -k, -m, --deselect, "
            "--ignore); an option the tests need when they run goes in pytest_args"
        ]

    # --- discovery --------------------------------------------------------------------------

    def base_args(self) -> list[str]:
        return [
            sys.executable, "-m", "pytest",
            "-p", PLUGIN,
            "-p", "no:cacheprovider",
            "--rootdir", str(self.root),
        ]  # fmt: skip

    def targets(self) -> list[str]:
        """What pytest collects: the tests folder, or the selection (``-- ARGS``).

        With a selection, the folder goes in as ``testpaths``, which pytest uses only when the
        arguments name no path or node id: pytest itself tells ``-k expr`` from ``tests/x.py``."""
        if not self.selection:
            return [str(self.config.tests_path), *self.config.pytest_args]
        folder = os.path.relpath(self.config.tests_path, self.root)
        return [
            "-o", f"testpaths={shlex.quote(folder)}", *self.config.pytest_args, *self.selection
        ]  # fmt: skip

    def discover(self, scope: RunScope) -> list[TestCase]:
        self._check_not_another_language()
        collect_file = scope.folder() / "collect.json"
        argv = [*self.base_args(), "--collect-only", "-q", *self.targets()]
        values = collection_values(scope.run_id, self.config.services)
        rendered = render_env(self.config.env, values)
        env = collection_env({**os.environ, **rendered}, configured=self.config.env)
        env["TESTPOOL_COLLECT_FILE"] = str(collect_file)
        try:
            returncode, stdout, stderr = run_collector(
                argv, cwd=self.root, env=env, timeout=DISCOVERY_TIMEOUT, scope=scope
            )
        except subprocess.TimeoutExpired:
            raise DiscoveryError("pytest collection took too long") from None
        output = decode(stdout + stderr).strip()
        if returncode == 5:
            if self.selection:
                raise NoTestsError(f"no tests selected by -- {shlex.join(self.selection)}")
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
        cases = [case_of(entry) for entry in collected["items"]]
        self._check_inside(cases)
        self.skipped_files = [
            (str(entry[0]), str(entry[1]))
            for entry in collected.get("skipped", [])
            if isinstance(entry, list) and len(entry) == 2
        ]
        return cases

    def _check_not_another_language(self) -> None:
        """A tests folder with no Python in it but Go or JavaScript tests: say which runner
        it needs, rather than "pytest collected no tests"."""
        tests = self.config.tests_path
        names = [path.name for path in walk_files(tests)] if tests.is_dir() else [tests.name]
        if any(name.endswith(".py") for name in names):
            return
        if any(name.endswith("_test.go") for name in names):
            raise ConfigError(
                f"'{self.config.tests}' holds Go tests (*_test.go) and no Python: set "
                'runner = "go" (the runner is pytest unless the config says otherwise)'
            )
        if any(JS_TEST.search(name) for name in names):
            raise ConfigError(
                f"'{self.config.tests}' holds JavaScript/TypeScript tests and no Python: set "
                'runner = "command" with discover and run (`testpool init` can write them)'
            )

    def _check_inside(self, cases: list[TestCase]) -> None:
        """The workers' pytest collects the tests folder: a selection must stay inside it."""
        outside = [
            case.id
            for case in cases
            if case.file and not self.config.path(case.file).is_relative_to(self.config.tests_path)
        ]
        if outside:
            raise ConfigError(
                f"-- {shlex.join(self.selection)} selected tests outside '{self.config.tests}' "
                f"({', '.join(outside[:3])}{', …' if len(outside) > 3 else ''}): testpool runs "
                f"the tests under '{self.config.tests}' only"
            )

    def discovery_key(self, hasher: FileHasher) -> str | None:
        parts = [
            hasher.tree(self.config.tests_path),
            hasher.files(self._outside_files()),  # conftest.py files above `tests`, ini files
            json.dumps(self.config_inputs(), sort_keys=True),
            json.dumps(list(self.config.pytest_args)),
            json.dumps(dict(sorted(self.config.env.items()))),
            sys.version,
            DISCOVERY_FORMAT,
        ]
        if self.selection:
            parts.append(json.dumps(list(self.selection)))
        return combine(parts)

    # --- cache inputs -----------------------------------------------------------------------

    def own_files(self, case: TestCase) -> list[Path]:
        return [self.root / name for name in (case.file, *case.sources) if name]

    def shared_digest(self, case: TestCase, hasher: FileHasher) -> str:
        """The conftests, packages and local helper modules the test's module can run."""
        files = tuple(self.graph.dependencies(self.own_files(case)))
        digest = self._shared.get(files)  # many modules share the same conftests and helpers
        if digest is None:
            digest = self._shared[files] = hasher.files(files)
        return digest

    def shared_manifest(self, case: TestCase, hasher: FileHasher) -> dict[str, str]:
        files = self.graph.dependencies(self.own_files(case))
        return {_relative(path, self.root): hasher.file(path) for path in files}

    @property
    def graph(self) -> ImportGraph:
        if self._graph is None:
            self._graph = ImportGraph(self.root, self.config.tests_path)
        return self._graph

    def helper_files(self) -> list[Path]:
        """What no test's import analysis accounts for: data files, and Python files no test
        module imports (a plugin, a script a test runs), plus pytest's configuration."""
        tests = self.config.tests_path
        test_modules: list[Path] = []
        helpers: list[Path] = []
        for path in walk_files(tests):
            (test_modules if _is_test_file(path.name) else helpers).append(path)
        used: set[Path] = set()
        for module in test_modules:
            used.update(self.graph.dependencies([module]))
        return [path for path in helpers if path not in used] + self._outside_files()

    def _outside_files(self) -> list[Path]:
        """conftest.py files between the root and the tests folder, and pytest's ini files."""
        files = []
        for folder in self.config.tests_path.parents:
            if folder == self.root or not folder.is_relative_to(self.root):
                break
            files.append(folder / "conftest.py")
        return files + [self.root / name for name in INI_FILES]

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


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def not_selecting(args: tuple[str, ...]) -> list[str]:
    """The options among pytest ``-- ARGS`` that do not choose tests (``--runslow``, ``-x``,
    ``-p no:randomly``): they reach the collecting pytest, not the one that runs the tests.
    Paths and node ids select; so do ``-k``, ``-m``, ``--deselect``, ``--ignore(-glob)`` with
    their values (``-k expr``, ``-kexpr``, ``-xk expr``, ``--deselect=ID``) and ``--pyargs``.
    After ``--`` everything is a path. pytest's own cache (``--lf``, ``--sw``…) is off under
    testpool: a :class:`ConfigError`."""
    found: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        name = arg.split("=", 1)[0]
        if name in PYTEST_CACHE_OPTIONS:
            raise ConfigError(
                f"-- {arg}: pytest's cache is off under testpool, whose own cache reruns "
                "what failed or changed (--full reruns everything)"
            )
        if name == "--pyargs":
            continue
        if name in SELECTING:
            index += "=" not in arg  # its value
            continue
        if arg.startswith("--"):
            found.append(arg)
            continue
        # A cluster of short options: -k or -m ends it, with the rest (or the next) as value.
        letters = arg[1:]
        cut = next((i for i, letter in enumerate(letters) if f"-{letter}" in SELECTING), None)
        if cut is None:
            found.append(arg)
            continue
        if cut == len(letters) - 1:
            index += 1  # -xk EXPR
        if cut > 0:
            found.append(arg)  # -xk: the -x
    return found
