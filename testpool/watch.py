"""``testpool --watch``: run as usual, then keep the pool up and rerun what each change affects.

After the first pass the run does not end: the workers' servers, the forked pytest workers,
the shared services and tmux stay up, and :class:`WatchSession` waits for the project's files
to change (:mod:`testpool.filewatch`). For each burst of changes it

1. reads the configuration again: if it changed (or the secrets, or a service's settings),
   the run stops and starts again with it;
2. hashes the project anew with a fresh :class:`~testpool.hashing.FileHasher` (contents, never
   modification times) and compares every file with what the last pass was planned from;
3. brings the code the tests run up to date: in the default pytest mode the zygote forgets the
   changed modules (and those importing them) and collects their test files again, new files
   included, then every worker is forked anew from it (see :func:`collection_for` for when it
   must collect the whole suite instead); other runners discover again;
4. plans with the cache's own rules (:func:`testpool.cache.plan`), against the digests each
   test last ran with: exactly the tests whose digests changed rerun, plus new tests and those
   that did not get a verdict yet;
5. restarts the servers if their sources (``inputs``), the seed or the ``files`` changed, else
   re-seeds every ``DATA_DIR``, and runs the pass; the cache file gets its results.

The pure decisions (:func:`file_changes`, :func:`collection_for`, :func:`merge`) are tested on
their own; the loop itself runs against a real ``--watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from testpool.cache import (
    CacheData,
    CacheEntry,
    PlanItem,
    SharedInputs,
    manifests_for,
    plan,
    shared_inputs,
)
from testpool.config import AUTO
from testpool.errors import ConfigError, NoTestsError, TestpoolError, WorkerStartError
from testpool.filewatch import FileWatcher, watch_spec
from testpool.fsutil import display_path
from testpool.hashing import MISSING, FileHasher, expand_globs, walk_files
from testpool.report.console import print_error, say
from testpool.report.files import write_reports
from testpool.report.render import summary_renderables
from testpool.requirements import needed, resolve
from testpool.results import Outcome, RunSummary, Status, TestResult
from testpool.runners import make_runner
from testpool.runners.base import TestCase
from testpool.sanitize import block

if TYPE_CHECKING:
    from rich.console import Console

    from testpool.app import Prepared
    from testpool.config import Config, RunOptions
    from testpool.runner import Run
    from testpool.runners.base import Runner
    from testpool.runners.pytest_runner import PytestExecutor
    from testpool.state import RunScope

PYTEST_INI = ("pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml")
# The other way to bring the workers' code up to date, kept to measure it against the default
# (tests/benchmarks/bench.py, section watch): fork every worker anew from the zygote.
REFORK = os.environ.get("TESTPOOL_WATCH_REFORK") == "1"
SHOWN_FILES = 5


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChanges:
    """Files whose content differs between two hashings, that appeared, or that went."""

    changed: frozenset[Path] = frozenset()
    added: frozenset[Path] = frozenset()
    removed: frozenset[Path] = frozenset()

    @property
    def every(self) -> frozenset[Path]:
        return self.changed | self.added | self.removed

    def under(self, folder: Path) -> FileChanges:
        def inside(paths: frozenset[Path]) -> frozenset[Path]:
            return frozenset(p for p in paths if p.is_relative_to(folder))

        return FileChanges(inside(self.changed), inside(self.added), inside(self.removed))

    def python(self) -> frozenset[Path]:
        return frozenset(p for p in self.every if p.suffix == ".py")


def file_changes(before: Mapping[Path, str], after: Mapping[Path, str]) -> FileChanges:
    """Compare two hashings (path -> digest, ``missing`` for a file that is not there)."""
    changed, added, removed = set(), set(), set()
    for path in set(before) | set(after):
        old, new = before.get(path, MISSING), after.get(path, MISSING)
        if old == new:
            continue
        if old == MISSING:
            added.add(path)
        elif new == MISSING:
            removed.add(path)
        else:
            changed.add(path)
    return FileChanges(frozenset(changed), frozenset(added), frozenset(removed))


@dataclass(frozen=True)
class Collection:
    """What the pytest zygote must do before the next pass: ``restart`` (collect the whole
    suite in a new zygote, saying why), or forget the modules ``purge`` and collect the test
    files among ``modules`` again. Empty: its code is current."""

    restart: str = ""
    purge: tuple[Path, ...] = ()
    modules: tuple[Path, ...] = ()
    # Python files of the application (``inputs``) that changed: forgotten too; a process that
    # had imported one is replaced (a new zygote, or a worker forked anew).
    application: tuple[Path, ...] = ()

    @property
    def needed(self) -> bool:
        return bool(self.restart or self.purge or self.modules or self.application)


def collection_for(
    changes: FileChanges,
    *,
    root: Path,
    dependencies: Mapping[Path, Iterable[Path]],
    conftest_dependencies: Iterable[Path],
    application: Iterable[Path] = (),
) -> Collection:
    """How to bring the zygote's code up to date after ``changes`` (of the tests folder and
    pytest's files).

    ``dependencies`` maps every Python file of the tests folder to the files it can run (the
    cache's import analysis, before the change and after it: a module that imported a file
    that is gone depends on it too). A test module or a helper that only test modules import is
    collected again in place, with every module that imports it; anything pytest loads some
    other way — a conftest, a package's ``__init__``, what a conftest imports, a plugin, an ini
    file — needs a new zygote. ``application`` are the changed Python files of ``inputs``: they
    are forgotten too, and a process that had loaded one is replaced (``WatchSession._collect``).
    """
    touched = changes.every
    for path in sorted(touched):
        if path.name in ("conftest.py", "__init__.py") or (
            path.parent == root and path.name in PYTEST_INI
        ):
            return Collection(restart=f"{display_path(path, root)} changed")
    loaded_by_conftest = set(conftest_dependencies)
    imported = {dep for deps in dependencies.values() for dep in deps}
    for path in sorted(changes.python()):
        if path in loaded_by_conftest:
            return Collection(restart=f"{display_path(path, root)} changed (a conftest uses it)")
        # A Python file nothing imports may be a plugin pytest loaded (-p): only a new one is
        # surely not loaded yet.
        if path not in changes.added and path not in imported and not _is_test_module(path):
            return Collection(restart=f"{display_path(path, root)} changed")
    python = changes.python()
    purge = set(python) | {
        module for module, deps in dependencies.items() if python.intersection(deps)
    }
    return Collection(
        purge=tuple(sorted(purge)),
        modules=tuple(sorted(purge)),
        application=tuple(sorted(set(application))),
    )


def _is_test_module(path: Path) -> bool:
    name = path.name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def merge(
    latest: Mapping[str, TestResult], summary: RunSummary, order: list[str]
) -> tuple[RunSummary, dict[str, TestResult]]:
    """The suite as it stands after a pass: each test's result from the last pass that ran it
    (``cached`` for a test no pass ran), in ``order``. Returns the merged summary (the pass's
    own fields otherwise) and the updated ``latest``."""
    updated = dict(latest)
    ran = {r.id: r for r in summary.results if r.status is not Status.CACHED}
    updated.update(ran)
    by_id = {r.id: r for r in summary.results}
    results = []
    for test_id in order:
        if test_id in updated:
            results.append(updated[test_id])
        elif test_id in by_id:
            results.append(by_id[test_id])
    kept = {r.id: r for r in results}
    return replace(summary, results=results), kept


def with_deferred(
    found: list[TestCase], before: list[TestCase], deferred: set[str]
) -> list[TestCase]:
    """The suite after a re-collection whose answer left ``deferred`` test files uncollected
    (the zygote collected only the files of the tests to run, and these did not change):
    ``found`` plus the tests of those files as they were known ``before``, each file where it
    was (files new since, last)."""
    present = {case.id for case in found}
    kept = [case for case in before if case.file in deferred and case.id not in present]
    if not kept:
        return found
    position: dict[str, int] = {}
    for case in before:
        position.setdefault(case.file, len(position))
    return sorted([*found, *kept], key=lambda case: position.get(case.file, len(position)))


def forget_bytecode(paths: Iterable[Path]) -> None:
    """Remove the cached bytecode of changed Python files: Python (and pytest's assertion
    rewriting) trusts a ``.pyc`` whose recorded source size and modification second match,
    which an edit within the same second that keeps the size does not change."""
    for path in paths:
        if path.suffix != ".py":
            continue
        try:
            folder = Path(importlib.util.cache_from_source(str(path))).parent
        except (ValueError, NotImplementedError):
            continue
        for stale in folder.glob(f"{path.stem}.*.pyc"):
            with contextlib.suppress(OSError):
                stale.unlink()


# --- the session -------------------------------------------------------------------------------


@dataclass
class Look:
    """What one look at the project after a burst of events found."""

    runner: Runner
    hasher: FileHasher  # has read every file the next plan needs
    shared: SharedInputs
    changes: FileChanges
    restart_run: str = ""  # the configuration, secrets or a service changed: start again
    renew_servers: str = ""  # the servers' sources, seed or files changed (or they are down)
    # pytest: what each Python file of the tests folder can run, as the files are now
    dependencies: dict[Path, list[Path]] | None = None


@dataclass
class Ready:
    """The suite brought up to date: its tests, and those failed before running (a file that
    no longer collects)."""

    cases: list[TestCase]
    decided: dict[str, Outcome] = field(default_factory=dict)


class WatchSession:
    """The loop of one ``--watch`` run (the :class:`~testpool.runner.Run` calls :meth:`serve`
    after its first pass). Between passes it holds what each test last ran against."""

    def __init__(
        self,
        config: Config,
        options: RunOptions,
        prepared: Prepared,
        scope: RunScope,
        watcher: FileWatcher,
        out: Console,
        err: Console,
        reload_config: Callable[[], Config],
    ) -> None:
        self.config = config
        self.options = options
        self.prepared = prepared
        self.scope = scope
        self.watcher = watcher
        self.out = out
        self.err = err
        self.reload_config = reload_config
        self.root = config.root
        self.salt = prepared.data.salt
        self.cases = [item.case for item in prepared.items]
        self.order = [case.id for case in self.cases]
        self.known: dict[str, Mapping[str, str]] = {
            item.case.id: item.inputs for item in prepared.items
        }
        hasher = prepared.hasher
        self.snapshot = hasher.digests()  # what the first pass was planned from
        self.shared = prepared.shared  # what the first pass was planned with
        self.dependencies = _dependencies(prepared.runner)  # as of the last plan
        self.latest: dict[str, TestResult] = {}
        # Why the plan ran or skipped each test of the pass that runs (report.json, as a run's)
        self.reasons = {item.case.id: item.reason for item in prepared.items}
        self.restart_reason = ""  # set when the run must start again (the configuration)
        self.servers_down = ""  # why the servers did not come back (retried on each change)
        self.decided: dict[str, Outcome] = {}  # tests of the next pass failed before it runs
        # The zygote's own re-collection, done while a pass runs, and why it must collect anew
        # (it could not catch up).
        self._catching_up: asyncio.Future[Any] | None = None
        self._zygote_behind = ""
        self.merged: RunSummary | None = None

    # --- the loop --------------------------------------------------------------------------

    async def serve(self, run: Run) -> None:
        """After the first pass: report it, then rerun what each change affects until Ctrl-C
        (which cancels this), an error that ends the run, or a configuration change."""
        self._after_pass(run, await run.finish_pass(), self.prepared.items)
        try:
            await self._loop(run)
        finally:
            if self._catching_up is not None:
                self._catching_up.cancel()
                await asyncio.gather(self._catching_up, return_exceptions=True)

    async def _loop(self, run: Run) -> None:
        async for _batch in self.watcher.batches():  # what changed is read from the files
            seen = time.monotonic()
            try:
                look = self._look()
                if look is None:
                    continue  # e.g. a save without a change, or an editor's own file
                if look.restart_run:
                    self.restart_reason = look.restart_run
                    return
                items = await self._get_ready(run, look)
            except _Restart as restart:
                self.restart_reason = restart.message
                return
            except TestpoolError as error:
                print_error(self.err, error.message, error.detail)
                self._watching()
                continue
            except OSError as error:  # e.g. a DATA_DIR a test left in a state we cannot reset
                print_error(self.err, f"--watch could not get ready for a rerun: {error}")
                self._watching()
                continue
            if items is None:
                self._watching()
                continue
            self.reasons = {item.case.id: item.reason for item in items}
            summary = await run.run_pass(
                [item for item in items if item.run],
                [item for item in items if not item.run],
                self.order,
                self.decided,
            )
            summary.wall_time = time.monotonic() - seen  # from the change, as the user sees it
            self._after_pass(run, summary, items)
            if run.error is not None:
                return

    def explained(self, summary: RunSummary) -> RunSummary:
        """``summary`` with why the pass ran or skipped each of its tests (as a run's
        report.json has it; `testpool explain` shows it)."""
        results = [replace(r, reason=self.reasons.get(r.id, r.reason)) for r in summary.results]
        return replace(summary, results=results)

    def _watching(self) -> None:
        say(self.out, "testpool: watching for changes (Ctrl-C to stop)", style="dim")

    def _after_pass(self, run: Run, summary: RunSummary, items: list[PlanItem]) -> None:
        """Print the pass's result, remember what each test ran against, write the reports of
        the suite as it stands."""
        inputs = {item.case.id: item.inputs for item in items}
        summary = self.explained(summary)
        for result in summary.results:
            if result.status is Status.NOT_RUN:
                self.known.pop(result.id, None)  # no verdict: it runs with the next change
            elif result.status is not Status.CACHED and result.id in inputs:
                self.known[result.id] = inputs[result.id]
        self.merged, self.latest = merge(self.latest, summary, self.order)
        for renderable in summary_renderables(summary, verbose=self.options.verbose):
            self.out.print(renderable)
        this_pass = {result.id for result in summary.results if result.status is not Status.CACHED}
        earlier = [
            r.id for r in self.merged.results if r.status.is_failure and r.id not in this_pass
        ]
        if earlier:
            shown = ", ".join(earlier[:3]) + (", …" if len(earlier) > 3 else "")
            say(self.out, f"testpool: still failing from an earlier pass: {len(earlier)} ({shown})")
        with contextlib.suppress(OSError):
            write_reports(self.merged, self.config.results_path)
        if run.error is None:
            self._watching()

    # --- what a change means ---------------------------------------------------------------

    def _look(self) -> Look | None:
        """Read the configuration and hash the project anew; None if nothing that any test
        depends on changed."""
        config = self._current_config()
        if config != self.config:
            return Look(*self._nothing(), restart_run="the configuration changed")
        hasher = FileHasher(self.root)
        runner = make_runner(config, self.options.runner_args)
        tests = config.tests_path
        for path in walk_files(tests) if tests.is_dir() else [tests]:
            hasher.file(path)  # new test files too, which no digest covers yet
        for path in self.snapshot:
            hasher.file(path)
        shared = shared_inputs(config, runner, hasher, self.salt)
        changes = file_changes(self.snapshot, hasher.digests())
        if not changes.every and shared == self.shared and not self.servers_down:
            return None
        look = Look(runner, hasher, shared, changes)
        before = self.shared
        for what, changed in (
            ("the configuration", shared.config != before.config),
            ("the secrets", shared.secrets != before.secrets),
            (
                "a service's settings",
                (shared.service_digests, shared.server_services)
                != (before.service_digests, before.server_services),
            ),
        ):
            if changed and not look.restart_run:
                look.restart_run = f"{what} changed"
        if shared.inputs != before.inputs:
            look.renew_servers = "their sources changed"
        elif shared.seed != before.seed:
            look.renew_servers = "the data seed changed"
        elif self.servers_down:
            look.renew_servers = self.servers_down
        self._say_changed(changes, shared)
        return look

    def _nothing(self) -> tuple[Runner, FileHasher, SharedInputs, FileChanges]:
        return self.prepared.runner, FileHasher(self.root), self.shared, FileChanges()

    async def _get_ready(self, run: Run, look: Look) -> list[PlanItem] | None:
        """Bring servers, data and the suite's code up to date, at the same time where they
        do not depend on each other, and plan the pass. None: nothing to run (or the servers
        did not come back; the next change tries again)."""
        forget_bytecode(look.changes.python())
        if look.renew_servers:
            say(self.out, f"testpool: restarting the servers ({look.renew_servers})")
            servers = asyncio.ensure_future(run.renew_servers(look.renew_servers))
        else:
            servers = asyncio.ensure_future(run.reseed())  # fresh data for the pass
        collecting = asyncio.ensure_future(self._update_suite(run, look))
        await _both(servers, collecting)
        failed = servers.exception()
        if failed is not None:
            # What the suite's update found is looked at again with the next change.
            collecting.exception()  # (retrieved: an error there is not reported twice)
            if not isinstance(failed, WorkerStartError):
                raise failed
            self.servers_down = "the servers did not start last time"
            print_error(self.err, failed.message, failed.detail)
            say(self.err, "testpool: fix it and save: the servers are started again then")
            return None
        self.servers_down = ""
        ready = collecting.result()
        # The zygote forks the workers while the pass is planned.
        opening = asyncio.ensure_future(run.open_sessions())
        try:
            items = self._plan(ready, look)
        finally:
            await opening
        if run.services is not None:
            wanted = set(needed([item.case for item in items if item.run], self.config))
            missing = sorted(wanted - set(run.services.names))
            if missing:
                raise _Restart(f"a test now needs service {missing[0]}")
        if not any(item.run for item in items):
            say(self.out, "testpool: no test depends on what changed")
            self._forget_removed()
            return None
        return items

    def _forget_removed(self) -> None:
        """Tests that are gone leave the reports too (a pass would have said so otherwise)."""
        if self.merged is None:
            return
        present = set(self.order)
        if all(result.id in present for result in self.merged.results):
            return
        kept = [result for result in self.merged.results if result.id in present]
        self.merged = replace(self.merged, results=kept)
        self.latest = {k: v for k, v in self.latest.items() if k in present}
        with contextlib.suppress(OSError):
            write_reports(self.merged, self.config.results_path)

    def _plan(self, ready: Ready, look: Look) -> list[PlanItem]:
        """The cache's plan for the suite as it is now, against what each test last ran (or
        was skipped) with: a test reruns when one of its digests changed, or when it has none
        (it is new, or got no verdict yet). A failed test whose inputs did not change does not
        run again."""
        self.cases = ready.cases
        self.order = [case.id for case in ready.cases]
        present = set(self.order)
        self.known = {k: v for k, v in self.known.items() if k in present}
        as_if_passed = CacheData(
            salt=self.salt,
            tests={k: CacheEntry(Status.PASSED, 0.0, "", v) for k, v in self.known.items()},
        )
        items = plan(ready.cases, as_if_passed, look.runner, look.hasher, look.shared)
        # What the digests of the tests to rerun are made of, for `testpool explain` (as a run
        # records them)
        self.prepared.store.manifests.update(
            manifests_for([i for i in items if i.run], look.runner, look.hasher, look.shared)
        )
        self.snapshot = look.hasher.digests()
        self.shared = look.shared
        if look.dependencies is not None:
            self.dependencies = look.dependencies
        rerun = {item.case.id for item in items if item.run}
        self.decided = {k: v for k, v in ready.decided.items() if k in rerun}
        return items

    def _current_config(self) -> Config:
        try:
            return self.reload_config()
        except ConfigError as error:
            say(
                self.err,
                f"testpool: warning: the configuration has an error; the running one is kept "
                f"until it is fixed: {error.message}",
            )
            return self.config

    async def _update_suite(self, run: Run, look: Look) -> Ready:
        """The suite after the change, with the code the workers will run brought up to date:
        in pytest's session mode by the zygote, else by discovering again when test files
        changed."""
        from testpool.runners.pytest_runner import PytestRunner

        changes, runner = look.changes, look.runner
        tests = self.config.tests_path
        in_tests = changes.under(tests)
        root_files = FileChanges(
            *(
                frozenset(p for p in group if p.parent == self.root and p.name in PYTEST_INI)
                for group in (changes.changed, changes.added, changes.removed)
            )
        )
        pytest_changes = FileChanges(
            in_tests.changed | root_files.changed,
            in_tests.added | root_files.added,
            in_tests.removed | root_files.removed,
        )
        executor = _zygote_executor(run)
        if executor is None or not isinstance(runner, PytestRunner):
            if pytest_changes.every:
                return Ready(self._discover(runner, look.hasher))
            return Ready(self.cases)
        graph = runner.graph
        python_files = graph.every_python_file()
        conftests = [path for path in python_files if path.name == "conftest.py"]
        look.dependencies = _dependencies(runner)
        dependencies = {path: set(deps) for path, deps in self.dependencies.items()}
        for path, deps in (look.dependencies or {}).items():
            dependencies.setdefault(path, set()).update(deps)
        inputs = set(expand_globs(self.root, self.config.inputs))
        application = [
            path
            for path in changes.python()
            if path in inputs or (path in changes.removed and not path.is_relative_to(tests))
        ]
        collection = collection_for(
            pytest_changes,
            root=self.root,
            dependencies=dependencies,
            conftest_dependencies=graph.dependencies(conftests) if conftests else [],
            application=application,
        )
        await self._caught_up()
        zygote = executor.zygote
        if zygote is not None and (zygote.error or not zygote.alive):
            collection = Collection(restart="the suite did not collect last time")
        elif self._zygote_behind:
            collection = Collection(restart=self._zygote_behind)
        if not collection.needed:
            return Ready(self.cases)
        return await self._collect(run, executor, collection, look)

    async def _caught_up(self) -> None:
        """Wait for the zygote's re-collection started during the last pass; one that failed
        means the next change collects anew."""
        catching_up, self._catching_up = self._catching_up, None
        if catching_up is None:
            return
        try:
            await catching_up
        except Exception:
            self._zygote_behind = "the collecting pytest missed the last change"

    def _discover(self, runner: Runner, hasher: FileHasher) -> list[TestCase]:
        """The suite, from the runner (not the pytest zygote): another runner or mode, or a
        selection (``-- ARGS``) only pytest can evaluate."""
        from testpool.discovery import discover, select

        data = self.prepared.data
        found, update, _ = discover(runner, self.config, hasher, data, self.scope)
        if update:
            data.discovery.update(update)
        try:
            return select(resolve(found, self.config), self.options.patterns)
        except NoTestsError as error:
            say(self.err, f"testpool: warning: {error.message}")
            return []

    async def _collect(
        self, run: Run, executor: PytestExecutor, collection: Collection, look: Look
    ) -> Ready:
        """Bring the code of the zygote and of every worker's pytest up to date and return the
        suite as collected now, with the tests of files that no longer collect failed with
        pytest's error.

        A change to test modules and the helpers they import is collected again in place, in
        the zygote and in each worker at once: the workers keep their session fixtures (a
        browser, a logged-in client) and their warm caches. Anything else (see
        :func:`collection_for`) gets a new zygote, and every worker is forked from it anew."""
        from testpool.discovery import select
        from testpool.runners.pytest_runner import case_of
        from testpool.runners.pytest_session import PytestSession, Recollected, ZygoteError

        zygote = executor.zygote
        assert zygote is not None
        purge = [*collection.purge, *collection.application]
        modules = list(collection.modules)
        application = {str(path) for path in collection.application}
        answer: Recollected | None = None
        closing: asyncio.Future[None] | None = None
        try:
            reason = collection.restart or self._zygote_behind
            if not reason:
                sessions = {
                    index: session
                    for index, session in run.sessions.items()
                    if isinstance(session, PytestSession) and not REFORK
                }
                if REFORK:
                    closing = asyncio.ensure_future(run.close_sessions())
                timeout = self.config.test_timeout
                bytecode = self.scope.folder() / "bytecode"
                # The workers first: one compiles and lists the tests, then the others load
                # what it compiled, all at once. (They are forks of the zygote: what it had
                # loaded, they have too.)
                answers: list[Recollected | None] = []
                for group in (list(sessions.values())[:1], list(sessions.values())[1:]):
                    answers += await asyncio.gather(
                        *(
                            session.recollect(
                                purge, modules, timeout, bytecode=bytecode, describe=not answers
                            )
                            for session in group
                        )
                    )
                for index, reloaded in zip(sessions, answers, strict=True):
                    if reloaded is None or application.intersection(reloaded.forgotten):
                        # It failed, or has the application loaded: a new one is forked.
                        stale = run.sessions.pop(index, None)
                        if stale is not None:
                            await stale.close()
                        if reloaded is not None and application.intersection(reloaded.forgotten):
                            reason = "the tests import the application, whose sources changed"
                answer = answers[0] if answers and answers[0] is not None else None
                if answer is None:
                    answer = await zygote.recollect(purge, modules, bytecode)
                elif not reason:
                    # The zygote catches up while the pass runs (the workers it forks meanwhile
                    # wait for it): it only matters for workers forked from now on.
                    self._catching_up = asyncio.ensure_future(
                        zygote.recollect(purge, modules, bytecode, first=False)
                    )
                if answer.unplaced:
                    reason = "a test file in a new folder"
                elif application.intersection(answer.forgotten):
                    reason = "the tests import the application, whose sources changed"
            if reason:
                say(self.out, f"testpool: collecting the suite again ({reason})")
                closing = closing or asyncio.ensure_future(run.close_sessions())
                await self._caught_up()
                await zygote.restart()
                self._zygote_behind = ""
                if zygote.error:
                    raise ZygoteError(zygote.error)
                answer = await zygote.recollect([], [])
        except ZygoteError as error:
            lines = str(error).split("\n", 1)
            print_error(self.err, lines[0], lines[1] if len(lines) > 1 else "")
        finally:
            if closing is not None:
                await closing
        if answer is None:
            # The workers fail every test with the error until a change fixes it.
            return Ready(self.cases)
        if self.options.runner_args:
            found = self._discover(look.runner, look.hasher)  # only pytest applies -k, -m, ids
        else:
            try:
                found = select(
                    resolve([case_of(entry) for entry in answer.items], self.config),
                    self.options.patterns,
                )
            except NoTestsError:
                found = []
            if answer.deferred:
                found = with_deferred(found, self.cases, set(answer.deferred))
        decided: dict[str, Outcome] = {}
        present = {case.id for case in found}
        for node, text in answer.errors:
            say(self.err, f"testpool: {node or 'a plugin'} could not be collected:", style="red")
            self.err.print(Text("\n".join("  " + line for line in block(text).splitlines())))
            file = node.split("::", 1)[0]
            for case in self.cases:
                if case.file == file and case.id not in present:
                    found.append(case)  # kept, failed with the error, until the file collects
                    present.add(case.id)
                    decided[case.id] = Outcome(
                        Status.FAILED, 0.0, text, f"{file} could not be collected"
                    )
        return Ready(found, decided)

    def _say_changed(self, changes: FileChanges, shared: SharedInputs) -> None:
        shown = sorted(display_path(path, self.root) for path in changes.every)
        if shared.secrets != self.shared.secrets:
            shown.append("the secrets")
        more = len(shown) - SHOWN_FILES
        text = ", ".join(shown[:SHOWN_FILES]) + (f" and {more} more" if more > 0 else "")
        say(
            self.out,
            f"testpool: changed: {text or 'nothing (trying the servers again)'}",
            style="bold",
        )


async def _both(first: asyncio.Future[Any], second: asyncio.Future[Any]) -> None:
    """Wait for both to finish (their errors are for the caller to read); cancelled, cancel
    both and wait for them to end."""
    try:
        await asyncio.wait({first, second})
    except asyncio.CancelledError:
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        raise


class _Restart(TestpoolError):
    """The run must start again (raised between passes, caught by the loop)."""


def _dependencies(runner: Runner) -> dict[Path, list[Path]]:
    """pytest: what each Python file of the tests folder can run (the cache's analysis)."""
    from testpool.runners.pytest_runner import PytestRunner

    if not isinstance(runner, PytestRunner):
        return {}
    graph = runner.graph
    return {path: graph.dependencies([path]) for path in graph.every_python_file()}


def _zygote_executor(run: Run) -> PytestExecutor | None:
    """The run's pytest executor in session mode (whose zygote the code lives in)."""
    from testpool.runners.pytest_runner import PytestExecutor

    executor = run.executor
    return executor if isinstance(executor, PytestExecutor) and executor.zygote else None


# --- the command --------------------------------------------------------------------------------


def watch_suite(
    config: Config,
    options: RunOptions,
    out: Console,
    err: Console,
    reload_config: Callable[[], Config],
) -> int:
    """``testpool --watch``: a run that stays up and reruns what changes affect, until Ctrl-C
    (exit 130) or an error that ends it; a change of the configuration starts it again."""
    from testpool.app import check_results_dir, prepare, sweep
    from testpool.startup import Timeline, process_age
    from testpool.state import RunScope

    if options.shard is not None or options.queue is not None:
        raise ConfigError("--watch runs the suite on this machine: drop --shard and --queue")
    # report.json's startup: the first pass's (a run started again after a configuration
    # change counts from then)
    timeline = Timeline(age=process_age())
    while True:
        sweep(err)
        check_results_dir(config)
        spec = watch_spec(config)
        with (
            FileWatcher(spec, warn=lambda text: say(err, f"testpool: warning: {text}")) as watcher,
            RunScope(config.root) as scope,
        ):
            prepared = prepare(config, options, err, scope, timeline)
            timeline = Timeline()
            session = WatchSession(
                config, options, prepared, scope, watcher, out, err, reload_config
            )
            say(
                out,
                f"testpool: --watch: watching {watcher.folders} folder(s) of {config.root.name}; "
                "Ctrl-C stops",
                style="dim",
            )
            summary = _run(config, options, prepared, scope, out, session)
        merged, _ = merge(session.latest, session.explained(summary), session.order)
        if session.restart_reason:
            say(out, f"testpool: {session.restart_reason}: starting again")
            config = reload_config()
            continue
        shown = [display_path(p, config.root) for p in write_reports(merged, config.results_path)]
        for renderable in summary_renderables(merged, verbose=options.verbose, reports=shown):
            out.print(renderable)
        if merged.error:
            print_error(err, merged.error, merged.error_detail)
        return merged.exit_code()


def _run(
    config: Config,
    options: RunOptions,
    prepared: Prepared,
    scope: RunScope,
    out: Console,
    session: WatchSession,
) -> RunSummary:
    from testpool.app import choose_workers
    from testpool.report.console import make_reporter
    from testpool.report.files import RunLogs
    from testpool.runner import Run

    choice = None
    if config.workers == AUTO:
        # For the whole suite: every worker stays up for the passes to come.
        choice = choose_workers(config, prepared, prepared.items)
        say(out, f"testpool: workers: {choice.reason}")
        config = replace(config, workers=choice.workers)
    logs = RunLogs(config.results_path, scope.run_id, config.keep_logs)
    logs.create()
    to_run = [item for item in prepared.items if item.run]
    # As a run without --watch does (see testpool.app._run): for `testpool explain`.
    prepared.store.manifests.update(
        manifests_for(to_run, prepared.runner, prepared.hasher, prepared.shared)
    )
    run = Run(
        config,
        options,
        prepared.runner,
        to_run=to_run,
        cached=[item for item in prepared.items if not item.run],
        order=[item.case.id for item in prepared.items],
        durations=prepared.data.durations(),
        store=prepared.store,
        salt=prepared.data.salt,
        reporter=make_reporter(out),
        scope=scope,
        logs=logs,
        watch=session,
        timeline=prepared.timeline,
        workers_choice=choice.to_dict() if choice is not None else None,
    )
    return asyncio.run(run.execute())
