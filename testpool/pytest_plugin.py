"""The pytest plugin testpool loads into the suite's own pytest (``-p testpool.pytest_plugin``).

Two jobs:

- **process mode** (one pytest per test): writes the test's verdict as JSON to the file named by
  ``TESTPOOL_RESULT_FILE`` when the session ends.
- **session mode** (``--testpool-serve``, the default): one pytest (the *zygote*) collects once
  and forks a long-lived worker process per testpool worker (see :class:`_Zygote`); each worker
  runs the node ids it is sent and answers one JSON verdict per test. Between tests every
  fixture narrower than the session (function, class, module, package) is torn down, so a test
  sees what it would see in a fresh process, minus the start-up and collection cost, which is
  paid once per run rather than once per worker. Output is captured per test by pytest.

It also loads the fixtures for the tests (:mod:`testpool.pytest_fixtures`, which pytest loads by
its entry point anyway, unless plugin autoloading is off) and makes sure testpool's own pytest
processes run every test themselves, on the worker's server (see :func:`_no_distribution` and
:func:`_point_base_url_plugin`).

This module runs inside the test process, never inside testpool; it imports nothing of testpool.
It is loaded only by testpool (``-p``), unlike the fixtures, which every pytest loads.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import gc
import importlib
import json
import linecache
import os
import random
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from testpool import pytest_reimport
from testpool.pytest_reimport import Renewal, Stuck

CMD_FD = "TESTPOOL_CMD_FD"
RESULT_FD = "TESTPOOL_RESULT_FD"
RESULT_FILE = "TESTPOOL_RESULT_FILE"
COLLECT_FILE = "TESTPOOL_COLLECT_FILE"
# A file holding a JSON list of root-relative test files: the zygote collects only these before
# it forks (the files of the tests to run, or of the first ones); a worker collects any other
# file when sent one of its tests. (A file: the list may be longer than a variable may be.)
FIRST_FILES = "TESTPOOL_FIRST_FILES"
BASE_URL_PLUGIN = "base_url"  # pytest-base-url's registered name (pytest-playwright uses it)
# In every stand-in testpool sets for a per-worker variable while pytest collects (see
# testpool.workerenv, whose COLLECTION_MARK this must equal).
COLLECTION_MARK = "testpool-collection-time"

# Loaded by name, which is also its entry point's name: never registered twice.
pytest_plugins = ["testpool.pytest_fixtures"]

# A verdict carries at most this many characters of the test's output: the tail, as testpool
# keeps of a test run in its own process. JSON-escaped, even the worst case (12 bytes a
# character) stays far below the size testpool accepts for one verdict line, so a test is
# never failed for what it printed.
OUTPUT_LIMIT = 4 * 1024 * 1024
TRUNCATED_NOTE = "[testpool: earlier output truncated]\n"


def _watched_names() -> list[str]:
    """The per-worker variables whose reads at import matter. A shared API_TOKEN (set by the
    config or the secrets) is the same on every worker: reading it is fine."""
    return [
        name
        for name in pytest_reimport.PER_WORKER
        if name != "API_TOKEN" or os.environ.get(name) == COLLECTION_MARK
    ]


if CMD_FD in os.environ and RESULT_FD in os.environ:
    # In the zygote (or a pytest a worker's test starts, which pytest_configure tells apart):
    # note who reads a per-worker variable from now on, before pytest imports the other
    # plugins and the first conftest.py files, until collection ends.
    pytest_reimport.watch(_watched_names())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testpool")
    group.addoption(
        "--testpool-serve",
        action="store_true",
        default=False,
        help="(testpool internal) run node ids read from TESTPOOL_CMD_FD",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    _no_distribution(config)


def _no_distribution(config: pytest.Config) -> None:
    """Keep pytest-xdist from distributing the tests of testpool's own pytest processes.

    testpool runs the tests in parallel itself. A project that runs pytest-xdist (``addopts =
    "-n auto --dist=loadgroup"``) would otherwise turn testpool's pytest into an xdist
    controller, which collects nothing itself and hands the tests to processes of its own.
    ``-p no:xdist`` cannot do it: the ``-n`` in ``addopts`` would become an unknown option.
    So xdist's options are reset to "no distribution" here, before xdist's ``pytest_configure``
    reads them; the values are final whichever ``pytest_cmdline_main`` runs first.
    """
    option = config.option
    if not hasattr(option, "numprocesses"):
        return  # pytest-xdist is not installed, or the project turned it off
    resets: dict[str, Any] = {
        "numprocesses": 0,
        "dist": "no",
        "tx": [],
        "distload": False,
        "looponfail": False,
    }
    for name, value in resets.items():
        if hasattr(option, name):
            setattr(option, name, value)


def pytest_configure(config: pytest.Config) -> None:
    register_requires_marker(config)
    if config.getoption("testpool_serve", False):
        config.pluginmanager.register(
            _Zygote(int(os.environ[CMD_FD]), int(os.environ[RESULT_FD])), "testpool-zygote"
        )
        return
    pytest_reimport.stop_watching()  # not the zygote: a pytest run by a worker's test
    if os.environ.get(RESULT_FILE):
        config.pluginmanager.register(_OneShot(os.environ[RESULT_FILE]), "testpool-oneshot")
        _point_base_url_plugin(config)
    if os.environ.get(COLLECT_FILE) and config.getoption("collectonly", False):
        config.pluginmanager.register(_CollectExport(os.environ[COLLECT_FILE]), "testpool-collect")


def _point_base_url_plugin(config: pytest.Config) -> None:
    """Point pytest-base-url's ``base_url`` (``--base-url``) at the worker's server.

    Where pytest-base-url is installed, testpool's fixtures leave ``base_url`` to it; under
    testpool its value is the worker's ``TEST_BASE_URL``, whatever ``--base-url`` or the
    ``base_url`` ini option say (they name one server; the tests must use their worker's).
    Called once the worker's environment is in place; the fixture reads the option when a test
    first asks for it.
    """
    url = os.environ.get("TEST_BASE_URL")
    if url and config.pluginmanager.has_plugin(BASE_URL_PLUGIN):
        config.option.base_url = url


REQUIRES_MARKER = (
    "requires(*services): the shared testpool services this test needs, "
    'e.g. @pytest.mark.requires("db")'
)


def register_requires_marker(config: pytest.Config) -> None:
    """Declare ``@pytest.mark.requires`` (so ``--strict-markers`` suites accept it), once: the
    fixtures plugin, which every pytest loads, declares it too."""
    if REQUIRES_MARKER not in config.getini("markers"):
        config.addinivalue_line("markers", REQUIRES_MARKER)


class _CollectExport:
    """Discovery: write every collected item's node id, defining file, the services it
    requires (``@pytest.mark.requires``) and its marker names as JSON."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._skipped: list[list[str]] = []  # [file, reason] of modules skipped at import

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped and report.nodeid and "::" not in report.nodeid:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self._skipped.append([report.nodeid, reason.removeprefix("Skipped: ")])

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = [describe(item) for item in session.items]
        found = {"items": items, "errors": session.testsfailed, "skipped": self._skipped}
        with open(self._path, "w") as handle:
            json.dump(found, handle)


def describe(item: pytest.Item) -> list[Any]:
    """What testpool learns of a collected test: ``[node id, module file, file defining it,
    services it requires, marker names]``."""
    module_file = item.nodeid.split("::", 1)[0]
    defined_in = item.location[0].replace(os.sep, "/")
    requires = [str(name) for mark in item.iter_markers("requires") for name in mark.args]
    markers = sorted({mark.name for mark in item.iter_markers()})
    return [item.nodeid, module_file, defined_in, requires, markers]


class _Collector:
    """Keeps the reports of the test being run."""

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)


class _OneShot(_Collector):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._uncollected: pytest.CollectReport | None = None

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.passed and self._uncollected is None:
            self._uncollected = report  # e.g. the test's module raised or skipped at import

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.reports or self._uncollected is None:
            result = verdict(self.reports, include_output=False)
        else:
            result = pytest_reimport.collect_verdict(self._uncollected)
            del result["output"]  # the process's output has it
        with open(self._path, "w") as handle:
            json.dump(result, handle)


class _KeepSession:
    """Stands in for "the next item" so teardown stops at the session: fixtures of every
    narrower scope are finalized after each test, session-scoped ones live on."""

    def __init__(self, session: pytest.Session) -> None:
        self._session = session
        self.nodeid = ""

    def listchain(self) -> list[Any]:
        return [self._session]


class _Zygote(_Collector):
    """Collects once, then forks one worker process per request (session mode).

    Requests arrive on the ``SOCK_SEQPACKET`` socket ``TESTPOOL_CMD_FD``, one message each:
    JSON ``{"env", "output"}`` with the worker's own socket attached (``SCM_RIGHTS``). For each,
    the zygote forks; the child becomes a worker (its own session, the worker's environment,
    its own output file and capture) and talks to testpool over the attached socket. On the
    result fd the zygote reports ``{"ready": n}`` once collected and ``{"exited": pid,
    "status": code}`` as children end; SIGCHLD is held back while a message is written, so
    messages never interleave, even when the handler would run in the middle of a long one.

    ``--watch`` also sends a message without a socket, ``{"recollect": {...}}``, and the same
    line reaches every forked worker in place of a node id: both collect the changed files
    again (see :func:`recollect`) and answer ``{"recollected": {...}}``, the zygote on the
    result fd, a worker on its socket. Workers forked after that run the new code too.

    **Collecting what runs, first.** With ``TESTPOOL_FIRST_FILES`` the zygote collects only
    those test files (those of the tests to run, or of the first tests only) and is ready as
    soon as they are; the folders and conftests of the whole suite are collected as usual. A
    worker sent a test of a file the zygote left out collects that file then
    (:meth:`collect_more`), as the zygote would have: with the collection-time stand-ins in
    the environment and the reads of per-worker variables noted, so a module that reads one
    at import is then imported anew with the worker's values, as if the zygote had collected
    it. A ``--watch`` re-collection collects a changed file that was left out for the first
    time; the others stay left out (its answer names them).
    """

    def __init__(self, cmd_fd: int, result_fd: int) -> None:
        super().__init__()
        self._cmd_fd = cmd_fd
        self._result_fd = result_fd
        self._reads: list[pytest_reimport.Read] = []
        self._items: dict[str, pytest.Item] = {}
        # What the workers it forks start from: the test modules to import anew, the readers
        # that cannot be (both kept up to date by --watch's re-collections).
        self._renewal = Renewal({})
        self._stuck: list[Stuck] = []
        # While the suite is collected: the test files to collect (root-relative node ids),
        # None for all of them. The others are left for later, by node id (a file may have
        # more than one collector: a module and its doctests).
        self._first: set[str] | None = None
        listing = os.environ.get(FIRST_FILES)
        if listing:
            with open(listing) as handle:
                self._first = set(json.load(handle))
        self.deferred: dict[str, list[pytest.File]] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        try:
            return (yield)
        finally:
            self._reads = pytest_reimport.stop_watching()  # before any fork
            self._first = None  # from now on every file asked for is collected

    @pytest.hookimpl(tryfirst=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> pytest.CollectReport | None:
        """A test file not in ``TESTPOOL_FIRST_FILES`` is found (its folder, its conftests and
        its node are as in a full collection) but not imported or collected until a worker is
        sent one of its tests."""
        if self._first is None or not isinstance(collector, pytest.File):
            return None
        if collector.nodeid in self._first:
            return None
        self.deferred.setdefault(collector.nodeid, []).append(collector)
        return pytest.CollectReport(collector.nodeid, "passed", None, [])

    def collect_more(
        self,
        session: pytest.Session,
        items: dict[str, pytest.Item],
        nodeid: str,
        renewal: Renewal,
        stuck: list[Stuck],
    ) -> None:
        """In a worker: collect the file of ``nodeid`` into ``items`` if the zygote left it out
        (once), as the zygote would have: with the collection-time stand-ins in place and the
        reads of per-worker variables noted. A module that read one is then imported anew with
        this worker's values before its first test here (``renewal``), as are those the zygote
        collected; the other readers join ``stuck``. A module that fails to collect (or skips
        itself) gives its tests that verdict. Called by :func:`_serve` before a test."""
        files = self.deferred.pop(nodeid.split("::", 1)[0], [])
        if not files:
            return
        reads: list[pytest_reimport.Read] = []
        collected: list[pytest.Item] = []
        failed: list[pytest.CollectReport] = []
        config = session.config
        with _collection_environ(), _noting_reads(reads):
            for file in files:
                found, uncollected = pytest_reimport.collect_tree(file)
                collected += found
                failed += uncollected
            config.hook.pytest_collection_modifyitems(
                session=session, config=config, items=collected
            )
        stale, others = pytest_reimport.sort_reads(
            reads, pytest_reimport.modules_by_file(collected)
        )
        renewal.collected_again([files[0].path], stale)
        renewal.failed_to_collect(failed, files[0].path)
        stuck[:] = pytest_reimport.still_stuck(stuck, others, [])
        session.items.extend(collected)
        items.update((item.nodeid, item) for item in collected)

    def _send(self, message: dict[str, Any]) -> None:
        data = memoryview((json.dumps(message) + "\n").encode())
        # A long message takes several writes; the SIGCHLD handler (which sends too) must not
        # cut into it.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            while data:
                data = data[os.write(self._result_fd, data) :]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _reap(self, signum: int, frame: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self._items = {item.nodeid: item for item in session.items}
        modules = pytest_reimport.modules_by_file(session.items)
        stale, self._stuck = pytest_reimport.sort_reads(self._reads, modules)
        self._renewal = Renewal(stale)  # each fork starts from the zygote's copy
        signal.signal(signal.SIGCHLD, self._reap)
        # Everything collected so far lives as long as the workers: keep it out of the
        # garbage collector's sight (fewer copy-on-write pages, much cheaper gc.collect()).
        gc.freeze()
        self._send({"ready": len(self._items), "partial": bool(self.deferred)})
        control = socket.socket(fileno=self._cmd_fd)
        while True:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
            if not data:
                _finish_worker(session)  # testpool closed the control socket: the zygote is done
            if not fds:
                request = json.loads(data)
                if "recollect" in request:
                    self._items, answer = recollect(
                        session,
                        self._items,
                        request["recollect"],
                        self._renewal,
                        self._stuck,
                        self.deferred,
                    )
                    self._send({"recollected": answer})
                    gc.freeze()
                continue
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                control.close()
                os.close(self._result_fd)
                try:
                    channel = _become_worker(session, json.loads(data), fds[0])
                except BaseException:
                    os._exit(70)
                _serve(session, self._items, channel, self, self._renewal, self._stuck)
                _finish_worker(session)
            os.close(fds[0])


def recollect(
    session: pytest.Session,
    items: dict[str, pytest.Item],
    request: dict[str, Any],
    renewal: Renewal,
    stuck: list[Stuck],
    deferred: dict[str, list[pytest.File]],
) -> tuple[dict[str, pytest.Item], dict[str, Any]]:
    """``--watch``: forget the modules of ``request["purge"]`` and collect the test files of
    ``request["modules"]`` again (new ones too, where pytest would collect them; a file gone
    loses its tests). Returns the tests now collected and the answer for testpool: every test
    (see :func:`describe`), the files that did not collect, the new files that could not be
    placed (in a folder where nothing was collected: testpool then collects anew), the
    files of ``purge`` that were loaded modules, and the test files this process has still
    not collected (``deferred``: left out by the zygote, see :class:`_Zygote`, and not
    changed; testpool keeps their tests as it knew them). A changed file in ``deferred`` is
    collected now, for the first time here.

    Runs in the zygote and in every forked worker, with the environment pytest collected in
    (the stand-ins), so a module reads at import what it would read in a fresh run, and the
    tests listed are those a fresh collection would list. As while the suite was collected,
    the reads of per-worker variables are noted: a test module collected again that read one
    is imported anew with the worker's values before its first test there (``renewal``, in
    this worker and in those forked from now on); other readers join ``stuck``."""
    forgotten = _forget_modules({os.path.realpath(path) for path in request["purge"]})
    paths = [Path(p) for p in request["modules"]]
    # Where a file left out is to be placed (its folder's node), before the changed ones go.
    folders = {files[0].path.parent: files[0].parent for files in deferred.values()}
    changed = {os.fspath(path) for path in paths}
    for nodeid in [n for n, files in deferred.items() if os.fspath(files[0].path) in changed]:
        del deferred[nodeid]
    errors = _FailedCollections()
    session.config.pluginmanager.register(errors, "testpool-recollect")
    reads: list[pytest_reimport.Read] = []
    try:
        stale = request["purge"] if request.get("compile", True) else []
        with (
            _collection_environ(),
            _shared_bytecode(request.get("bytecode"), stale),
            _noting_reads(reads),  # inside: not the environment's swaps
        ):
            fresh, unplaced = _collect_files(session, items, paths, folders)
    except Exception:  # a plugin's hook failed: testpool then collects in a new zygote
        fresh, unplaced = {}, list(request["modules"])
        errors.reports.append(["", traceback.format_exc()])
    finally:
        session.config.pluginmanager.unregister(errors)
    modules = pytest_reimport.modules_by_file(item for found in fresh.values() for item in found)
    to_renew, others = pytest_reimport.sort_reads(reads, modules)
    renewal.collected_again(list(fresh), to_renew)
    stuck[:] = pytest_reimport.still_stuck(stuck, others, forgotten)
    updated: dict[str, pytest.Item] = {}
    placed: set[Path] = set()
    for nodeid, item in items.items():
        node = _file_node(item)
        path = node.path if node is not None else None
        if path is None or path not in fresh:
            updated[nodeid] = item
        elif path not in placed:  # the file's new tests where its old ones were
            placed.add(path)
            updated.update((new.nodeid, new) for new in fresh[path])
    for path in sorted(set(fresh) - placed):  # files that had no test before
        updated.update((new.nodeid, new) for new in fresh[path])
    answer = {
        # Every test, unless the caller does not need the list (a worker, but one).
        "items": [describe(item) for item in renewal.as_collected(updated.values())]
        if request.get("describe", True)
        else [],
        "errors": errors.reports,
        "unplaced": unplaced,
        "forgotten": forgotten,
        "deferred": sorted(deferred),
    }
    return updated, answer


def _collect_files(
    session: pytest.Session,
    items: dict[str, pytest.Item],
    paths: list[Path],
    known_folders: dict[Path, pytest.Collector | None],
) -> tuple[dict[Path, list[pytest.Item]], list[str]]:
    """The tests of each file in ``paths`` as pytest collects them now (none for a file that
    is gone, ignored or not a test file), and the files it cannot place: new test files in a
    folder where nothing was collected before (``known_folders``: the nodes of folders whose
    files were left uncollected)."""
    by_file: dict[Path, tuple[pytest.File, list[pytest.Item]]] = {}
    for item in items.values():
        node = _file_node(item)
        if node is not None:
            by_file.setdefault(node.path, (node, []))[1].append(item)
    folders = {path: node for path, node in known_folders.items() if node is not None}
    folders.update((path.parent, node.parent) for path, (node, _) in by_file.items() if node.parent)
    patterns = session.config.getini("python_files")
    fresh: dict[Path, list[pytest.Item]] = {}
    unplaced: list[str] = []
    for path in paths:
        old = by_file.get(path)
        if old is not None:
            _forget_fixtures(*old)
        parent = old[0].parent if old is not None else folders.get(path.parent)
        if not path.is_file():
            fresh[path] = []
        elif parent is None:
            if any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
                unplaced.append(str(path))
        elif parent.ihook.pytest_ignore_collect(collection_path=path, config=session.config):
            fresh[path] = []
        else:
            fresh[path] = [
                item
                for collector in parent.ihook.pytest_collect_file(file_path=path, parent=parent)
                for item in session.genitems(collector)
            ]
    every = [item for found in fresh.values() for item in found]
    session.config.hook.pytest_collection_modifyitems(
        session=session, config=session.config, items=every
    )
    kept = {id(item) for item in every}  # what the hook did not deselect (-k, -m)
    return {path: [i for i in found if id(i) in kept] for path, found in fresh.items()}, unplaced


@contextlib.contextmanager
def _shared_bytecode(folder: str | None, changed: list[str]) -> Iterator[None]:
    """Compile once for every process: while modules are imported again, bytecode (pytest's
    rewritten test modules included) is read from and written to ``folder``, the run's own,
    whatever ``PYTHONDONTWRITEBYTECODE`` says. The first process to import the changed modules
    removes their old bytecode there (Python trusts a .pyc by its source's size and
    modification second) and compiles them; the others load what it wrote."""
    if folder is None:
        yield
        return
    for path in map(Path, changed):
        cached = Path(folder).joinpath(*path.parent.parts[1:])
        for stale in cached.glob(f"{path.stem}.*.pyc"):
            with contextlib.suppress(OSError):
                stale.unlink()
    prefix, dont_write = sys.pycache_prefix, sys.dont_write_bytecode
    sys.pycache_prefix, sys.dont_write_bytecode = folder, False
    try:
        yield
    finally:
        sys.pycache_prefix, sys.dont_write_bytecode = prefix, dont_write


@contextlib.contextmanager
def _noting_reads(reads: list[pytest_reimport.Read]) -> Iterator[None]:
    """Note the reads of per-worker variables (into ``reads``) while a --watch re-collection
    imports modules, as the zygote does while it collects the suite."""
    pytest_reimport.watch(_watched_names())
    try:
        yield
    finally:
        reads += pytest_reimport.stop_watching()


# A forked worker's environment before it took on its worker's (see _collection_environ).
_COLLECTION_ENVIRON: dict[str, str] | None = None


@contextlib.contextmanager
def _collection_environ() -> Iterator[None]:
    """In a forked worker: the environment the zygote collected in, for as long as modules are
    imported again (a module-level read of TEST_BASE_URL must see the stand-in, as in a
    fresh run, not this worker's value)."""
    if _COLLECTION_ENVIRON is None:
        yield
        return
    own = dict(os.environ)
    os.environ.clear()
    os.environ.update(_COLLECTION_ENVIRON)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(own)


class _FailedCollections:
    """Collects the errors of a ``--watch`` re-collection (a file that does not import)."""

    def __init__(self) -> None:
        self.reports: list[list[str]] = []

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.reports.append([report.nodeid, report.longreprtext])


def _file_node(item: pytest.Item) -> pytest.File | None:
    """The test file (a module, or a plugin's file) ``item`` was collected from."""
    return next((n for n in reversed(item.listchain()) if isinstance(n, pytest.File)), None)


def _forget_modules(files: set[str]) -> list[str]:
    """Drop the modules loaded from ``files`` so the next import runs their new code; returns
    the files that were loaded."""
    forgotten = []
    names = {os.path.basename(path) for path in files}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        # realpath only where the name matches: resolving hundreds of modules' paths is slow.
        if (
            isinstance(path, str)
            and os.path.basename(path) in names
            and os.path.realpath(path) in files
        ):
            del sys.modules[name]
            forgotten.append(os.path.realpath(path))
    importlib.invalidate_caches()  # a module file that is new since the last import is found
    linecache.clearcache()  # tracebacks show the new source
    return forgotten


def _forget_fixtures(file_node: pytest.File, items: list[pytest.Item]) -> None:
    """Unregister the fixtures an old collection of a file defined (its module, its classes),
    so the new definitions are the only ones (pytest 9 keys them by node, pytest 8 by node
    id). Best effort: pytest's private structures, which only decide what memory is kept."""
    nodes: set[Any] = {file_node}
    for item in items:
        chain = item.listchain()
        nodes.update(chain[chain.index(file_node) :] if file_node in chain else ())
    manager = getattr(file_node.session, "_fixturemanager", None)
    with contextlib.suppress(Exception):
        for by_node in getattr(manager, "_arg2node2fixturedefs", {}).values():
            for node in nodes:
                by_node.pop(node, None)
        for node in nodes:
            getattr(manager, "_node_autousenames", {}).pop(node, None)
    with contextlib.suppress(Exception):
        ids = {node.nodeid for node in nodes}
        for defs in getattr(manager, "_arg2fixturedefs", {}).values():
            defs[:] = [d for d in defs if getattr(d, "baseid", None) not in ids]


def _finish_worker(session: pytest.Session) -> NoReturn:
    """End a forked worker (or the zygote) the way pytest would, minus interpreter teardown.

    Session fixtures are already finalized; plugins still get ``pytest_sessionfinish`` and
    ``pytest_unconfigure``, and ``atexit`` handlers run. Skipping the interpreter's own
    teardown (module cleanup, a full garbage collection of everything collected) makes a
    worker exit in milliseconds instead of a sizeable fraction of a second.
    """
    status = 0
    try:
        session.config.hook.pytest_sessionfinish(session=session, exitstatus=session.exitstatus)
        session.config._ensure_unconfigure()
        atexit._run_exitfuncs()
    except BaseException:
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(status)


def _become_worker(session: pytest.Session, request: dict[str, Any], fd: int) -> socket.socket:
    """In a freshly forked child: take on the worker's identity and greet testpool."""
    os.setsid()  # its own process group: testpool can stop it alone
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.stop_global_capturing()  # the zygote's capture files are shared: let go
    output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    if capture is not None:
        capture.start_global_capturing()
    global _COLLECTION_ENVIRON
    _COLLECTION_ENVIRON = dict(os.environ)
    os.environ.update(request["env"])
    _point_base_url_plugin(session.config)
    random.seed()  # siblings must not share a random sequence
    channel = socket.socket(fileno=fd)
    channel.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())
    return channel


def _serve(
    session: pytest.Session,
    items: dict[str, pytest.Item],
    channel: socket.socket,
    collector: _Zygote,
    renewal: Renewal,
    stuck: list[Stuck],
) -> None:
    """Run the node ids testpool sends, one verdict line back for each, until it hangs up.

    A test of a file the zygote left out runs once this worker collected the file
    (``collector.collect_more``). A test of a module that read a per-worker variable at import
    runs on that module imported anew in this worker (``renewal``); ``stuck`` are the readers
    that cannot be.
    """
    keep = _KeepSession(session)
    reader = channel.makefile("r", encoding="utf-8")
    for line in reader:
        nodeid = json.loads(line)  # JSON: a node id may hold a line break
        if isinstance(nodeid, dict):  # --watch: modules changed (see recollect)
            items, answer = recollect(
                session, items, nodeid["recollect"], renewal, stuck, collector.deferred
            )
            channel.sendall((json.dumps({"recollected": answer}) + "\n").encode())
            continue
        if nodeid not in items:
            # A file the zygote left out: collected here, with the reads noted, before the
            # renewal below imports it anew if it read the worker's variables.
            collector.collect_more(session, items, nodeid, renewal, stuck)
        uncollected = renewal.prepare(session, items, nodeid) if renewal else None
        item = items.get(nodeid)
        if uncollected is not None:
            message = {"id": nodeid, **uncollected}
        elif item is None:
            message = {"id": nodeid, "outcome": "missing", "duration": 0.0}
        else:
            collector.reports = []
            item._report_sections = []  # a retry on this worker starts with clean sections
            failed = _renew_instance(item)
            if failed is not None:
                message = {"id": nodeid, **failed}
            else:
                session.shouldfail = False
                session.shouldstop = False
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=keep)
                message = {"id": nodeid, **verdict(collector.reports, include_output=True)}
            if message["outcome"] == "failed":
                _explain_collection_time_values(item, message, stuck)
        channel.sendall((json.dumps(message) + "\n").encode())
    # testpool is done with this worker: finalize session fixtures, then say so (testpool stops
    # the servers only after that, since a fixture's teardown may still need its server).
    session._setupstate.teardown_exact(None)
    with contextlib.suppress(OSError):
        channel.sendall(b'{"bye": true}\n')
    channel.close()


def _renew_instance(item: pytest.Item) -> dict[str, Any] | None:
    """Make the test's class instance anew, in this worker, before the test runs.

    pytest (8 and later) makes the instance of a test class -- a ``unittest.TestCase`` in
    particular, whose ``__init__`` may read ``TEST_BASE_URL`` -- when it collects, that is in
    the zygote, before any worker's environment exists; and it makes a new one after a test
    only for unittest classes. A fresh pytest would have made it with the worker's environment,
    so it is made again here, the way pytest makes it (``_getinstance``, then the bound method).
    Made here rather than left to pytest's lazy making: an ``__init__`` that raises there
    breaks pytest's own error report. Returns the failed verdict if ``__init__`` raised.
    pytest before 8.2 (no ``_getinstance``) makes a unittest instance when the test is set up,
    that is in the worker already.
    """
    if not isinstance(item, pytest.Function) or item.cls is None:
        return None
    if not hasattr(item, "_getinstance"):
        return None
    bound = item.__dict__.get("_obj")
    if bound is not None and getattr(bound, "__self__", None) is not item.__dict__.get("_instance"):
        return None  # not a method of the instance (a static method, a plugin's own callable)
    try:
        instance = item._getinstance()  # type: ignore[no-untyped-call]
    except Exception as error:
        text = traceback.format_exc()
        message = f"error making the test's class instance in the worker: {error!r}"
        return {"outcome": "failed", "duration": 0.0, "message": message[:300], "output": text}
    item._instance = instance
    item._obj = item._getobj()  # type: ignore[no-untyped-call]
    return None


def _explain_collection_time_values(
    item: pytest.Item, message: dict[str, Any], stuck: list[Stuck]
) -> None:
    """Say so when what the failed test uses may hold a stand-in from collection time.

    Such a value was read from the environment while pytest collected the suite in the zygote,
    before any worker existed; it is wrong on every worker, and the failure it causes (e.g.
    "Name or service not known") does not say why by itself. Test modules that read one at
    import are imported anew in the worker; what remains is a constant the module or class
    took from another module (``from helpers import BASE``) and the readers in ``stuck``
    (conftest.py files, plugins, other modules), which are not imported anew. The module's and
    class's constants and the conftest.py files of the test's folders are named in the
    message; every other reader only in the output.
    """
    names = []
    for holder in (getattr(item, "module", None), getattr(item, "cls", None)):
        if holder is None:
            continue
        for name, value in vars(holder).items():
            if isinstance(value, str | os.PathLike) and COLLECTION_MARK in os.fspath(value):
                names.append(f"{holder.__name__}.{name}")
    held = [f"{', '.join(names)} read the worker's environment at import"] if names else []
    conftests, others = pytest_reimport.readers_for(item, stuck)
    if not held and not conftests and not others:
        return
    root = item.config.rootpath
    when = "while pytest collected the suite (before any worker existed)"
    named = held + [pytest_reimport.describe(reader, root, line=False) for reader in conftests]
    if named:
        message["message"] = f"{'; '.join(named)}, {when}: {message['message']}"[:300]
    listed = held + [
        pytest_reimport.describe(reader, root, line=True) for reader in conftests + others
    ]
    # Last, so that the tail of the output shown in the summary has it.
    message["output"] = message.get("output", "") + (
        f"testpool: {when}:\n"
        + "".join(f"  - {line}\n" for line in listed)
        + f"What was made of those values holds a stand-in ({COLLECTION_MARK}) on every "
        "worker. testpool imports a test module that reads TEST_BASE_URL, PORT, DATA_DIR, "
        "API_TOKEN or TESTPOOL_WORKER at import anew in each worker, but not conftest.py "
        "files, plugins or other modules the tests import: read them in a fixture or in the "
        "test (or use the testpool_worker and base_url fixtures), not at import.\n"
    )


def verdict(reports: list[pytest.TestReport], *, include_output: bool) -> dict[str, Any]:
    """Fold a test's setup/call/teardown reports into one outcome."""
    outcome = "passed"
    message = ""
    for report in reports:
        if report.failed:
            outcome = "failed"
            message = message or _message(report)
        elif report.skipped and outcome == "passed":
            if hasattr(report, "wasxfail"):
                continue  # an expected failure is a pass for the suite
            outcome = "skipped"
            message = _skip_reason(report)
    result: dict[str, Any] = {
        "outcome": outcome,
        "duration": sum(report.duration for report in reports),
        "message": message,
    }
    if include_output:
        result["output"] = _output(reports)
    return result


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", "") or report.longreprtext
    first = text.strip().splitlines()[0] if text.strip() else ""
    where = "" if report.when == "call" else f"error in {report.when}: "
    return (where + first)[:300]


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])
    return ""


def _output(reports: list[pytest.TestReport]) -> str:
    parts: list[str] = []
    # Each phase's report repeats the sections of the phases before it: the last has them all.
    for title, content in reports[-1].sections if reports else ():
        if content.strip():
            parts.append(f"----- {title} -----\n{content.rstrip()}")
    for report in reports:
        if report.failed and report.longreprtext:
            parts.append(f"----- {report.when} failure -----\n{report.longreprtext.rstrip()}")
    text = "\n".join(parts) + ("\n" if parts else "")
    return text if len(text) <= OUTPUT_LIMIT else TRUNCATED_NOTE + text[-OUTPUT_LIMIT:]
