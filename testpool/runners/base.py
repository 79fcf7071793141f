"""The interface every runner implements, and what executors are told about a worker.

A runner does three things: list the tests (:meth:`Runner.discover`), say which files are a
test's own inputs and which are shared helpers (for the cache), and build an :class:`Executor`
that runs one test at a time on a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from testpool.execution import ProcessTracker
    from testpool.hashing import FileHasher
    from testpool.results import Outcome
    from testpool.secrets import Redactor
    from testpool.startup import Timeline
    from testpool.state import RunScope


@dataclass(frozen=True)
class TestCase:
    """A discovered test. ``file`` is the root-relative file that defines it ("" if unknown)."""

    __test__ = False  # not a pytest test class

    id: str
    file: str
    # Other files that define it (e.g. the module of an inherited test method).
    sources: tuple[str, ...] = ()
    # The shared services it needs (``@pytest.mark.requires``, ``// testpool:requires``; after
    # planning also the config's ``requires`` table), and its pytest marker names.
    requires: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerContext:
    """What an executor knows about the worker it runs tests on."""

    index: int
    port: int
    data_dir: Path
    env: Mapping[str, str]  # the full environment for a test on this worker


@dataclass(frozen=True)
class ExecContext:
    """Run-wide things an executor needs: where to work and who tracks processes."""

    root: Path
    scratch: Path  # private 0700 folder of this run
    tracker: ProcessTracker
    redact: Redactor
    base_env: Mapping[str, str]  # os.environ + config env (no worker or secret values)
    common_env: Mapping[str, str]  # what every worker shares: base + secrets + the run id
    # common_env with stand-ins for the per-worker variables (see testpool.workerenv): what
    # code run before any worker exists sees, e.g. pytest collecting the suite for the workers
    collection_env: Mapping[str, str]
    # Where the run's start-up phases are marked (an executor marks its own: collecting).
    timeline: Timeline | None = None
    # The test files to prepare before the first test, when the plan is known (see
    # testpool.startup.files_to_prepare_first); the others are prepared when first needed.
    # Empty: prepare everything up front.
    first_files: tuple[str, ...] = ()


class WorkerExecutor(Protocol):
    """Runs tests one at a time on one worker. Created per worker (and per server restart)."""

    async def start(self) -> None:
        """Get ready before the first test (may overlap the dev server's start-up)."""

    async def run(self, case: TestCase, timeout: float) -> Outcome:
        """Run one test to a verdict. Never raises for a test's own failure."""

    async def close(self) -> None:
        """Stop whatever the executor keeps running for this worker."""


class Executor(Protocol):
    async def warm_up(self) -> None:
        """Start slow one-time work that needs no worker (e.g. collecting) before the workers
        start, and return as soon as it is under way."""

    async def prepare(self, cases: list[TestCase]) -> dict[str, Outcome]:
        """One-time work before any test runs (e.g. compiling). Returns tests already decided
        (e.g. the tests of a package that failed to compile)."""

    def for_worker(self, worker: WorkerContext) -> WorkerExecutor: ...

    async def close(self) -> None:
        """Stop whatever the executor keeps running for the whole run."""


class Runner(Protocol):
    name: str
    selection: tuple[str, ...]  # `-- ARGS` from the command line (see make_runner)
    # Test files that had no tests because they skipped themselves while collected (pytest's
    # module-level skip, importorskip): (file, reason). Set by discover (or the cache).
    skipped_files: list[tuple[str, str]]

    def discover(self, scope: RunScope) -> list[TestCase]:
        """Every test under ``tests`` (of the selection, if any), in discovery order. A process
        it starts runs inside ``scope`` (see :func:`testpool.execution.run_collector`)."""

    def discovery_key(self, hasher: FileHasher) -> str | None:
        """A digest of everything discovery depends on (the selection included), or None if
        it cannot be cached. Never part of a test's own cache key: a test selected or not
        has the same inputs."""

    def own_files(self, case: TestCase) -> list[Path]:
        """Files whose change reruns just this test (and the others defined with it)."""

    def shared_digest(self, case: TestCase, hasher: FileHasher) -> str:
        """A digest of the shared test code this test can run (a pytest module's conftests
        and the helper modules it imports; the code of a Go package's other test files):
        its change reruns the tests that use it, not every test."""

    def shared_manifest(self, case: TestCase, hasher: FileHasher) -> dict[str, str]:
        """What :meth:`shared_digest` is made of: root-relative file name -> digest (of what
        of the file counts), so that ``testpool explain`` can name the file that changed."""

    def helper_files(self) -> list[Path]:
        """Files whose change reruns everything, when ``helpers`` is not configured."""

    def config_inputs(self) -> dict[str, Any]:
        """Runner settings read from elsewhere (e.g. pytest's ini options), for the cache key."""

    def executor(self, context: ExecContext) -> Executor: ...

    def notes(self) -> list[str]:
        """Warnings about how the command line's ``-- ARGS`` are used (one line each)."""
