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
import gc
import json
import os
import random
import signal
import socket
import sys
import traceback
from typing import Any, NoReturn

import pytest

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
    elif os.environ.get(RESULT_FILE):
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

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = []
        for item in session.items:
            module_file = item.nodeid.split("::", 1)[0]
            defined_in = item.location[0].replace(os.sep, "/")
            requires = [str(name) for mark in item.iter_markers("requires") for name in mark.args]
            markers = sorted({mark.name for mark in item.iter_markers()})
            items.append([item.nodeid, module_file, defined_in, requires, markers])
        with open(self._path, "w") as handle:
            json.dump({"items": items, "errors": session.testsfailed}, handle)


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

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        with open(self._path, "w") as handle:
            json.dump(verdict(self.reports, include_output=False), handle)


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
    "status": code}`` as children end. Those are single ``os.write`` calls below PIPE_BUF, so
    they never interleave, even when the SIGCHLD handler writes in the middle of the main loop.

    **Collecting what runs, first.** With ``TESTPOOL_FIRST_FILES`` the zygote collects only
    those test files (those of the tests to run, or of the first tests only) and is ready as
    soon as they are; the folders and conftests of the whole suite are collected as usual. A
    worker sent a test of a file the zygote left out collects that file then
    (:meth:`collect_more`), as the zygote would have: with the collection-time stand-ins in
    the environment, so what a module reads at import does not depend on which worker
    imported it, or when.
    """

    def __init__(self, cmd_fd: int, result_fd: int) -> None:
        super().__init__()
        self._cmd_fd = cmd_fd
        self._result_fd = result_fd
        listing = os.environ.get(FIRST_FILES)
        self._early = bool(listing)
        # The files collected (or to collect) now; the others wait, by node id (a file may
        # have more than one collector: a module and its doctests).
        self._collect_now: set[str] = set()
        if listing:
            with open(listing) as handle:
                self._collect_now = set(json.load(handle))
        self._deferred: dict[str, list[pytest.File]] = {}
        self._collecting_env: dict[str, str] = {}  # the zygote's: with the stand-ins

    @pytest.hookimpl(tryfirst=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> pytest.CollectReport | None:
        """A test file not in ``TESTPOOL_FIRST_FILES`` is found (its folder, its conftests and
        its node are as in a full collection) but not imported or collected until a worker is
        sent one of its tests."""
        if not self._early or not isinstance(collector, pytest.File):
            return None
        if collector.nodeid in self._collect_now:
            return None
        self._deferred.setdefault(collector.nodeid, []).append(collector)
        return pytest.CollectReport(collector.nodeid, "passed", None, [])

    def collect_more(
        self, session: pytest.Session, items: dict[str, pytest.Item], nodeid: str
    ) -> pytest.Item | None:
        """In a worker: ``nodeid``'s item, after collecting its file if the zygote left it
        out. None if it is still not there."""
        name = nodeid.split("::", 1)[0]
        files = self._deferred.pop(name, [])
        if not files:
            return None
        self._collect_now.add(name)
        worker_env = dict(os.environ)
        os.environ.clear()
        os.environ.update(self._collecting_env)
        try:
            collected = [item for file in files for item in session.genitems(file)]
            config = session.config
            config.hook.pytest_collection_modifyitems(
                session=session, config=config, items=collected
            )
        finally:
            os.environ.clear()
            os.environ.update(worker_env)
        session.items.extend(collected)
        items.update({item.nodeid: item for item in collected})
        return items.get(nodeid)

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._result_fd, (json.dumps(message) + "\n").encode())

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
        items = {item.nodeid: item for item in session.items}
        self._collecting_env = dict(os.environ)
        signal.signal(signal.SIGCHLD, self._reap)
        # Everything collected so far lives as long as the workers: keep it out of the
        # garbage collector's sight (fewer copy-on-write pages, much cheaper gc.collect()).
        gc.freeze()
        self._send({"ready": len(items), "partial": bool(self._deferred)})
        control = socket.socket(fileno=self._cmd_fd)
        while True:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
            if not data:
                _finish_worker(session)  # testpool closed the control socket: the zygote is done
            if not fds:
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
                _serve(session, items, channel, self)
                _finish_worker(session)
            os.close(fds[0])


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
    collector: _Collector,
) -> None:
    """Run the node ids testpool sends, one verdict line back for each, until it hangs up."""
    keep = _KeepSession(session)
    reader = channel.makefile("r", encoding="utf-8")
    for line in reader:
        nodeid = json.loads(line)  # JSON: a node id may hold a line break
        item = items.get(nodeid)
        if item is None and isinstance(collector, _Zygote):
            item = collector.collect_more(session, items, nodeid)
        if item is None:
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
                _explain_collection_time_values(item, message)
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
    """
    if not isinstance(item, pytest.Function) or item.cls is None:
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


def _explain_collection_time_values(item: pytest.Item, message: dict[str, Any]) -> None:
    """Say so when the failed test's module or class holds a stand-in from collection time.

    Such a value was read from the environment at import, while pytest collected the suite in
    the zygote, before any worker existed; it is wrong on every worker, and the failure it
    causes (e.g. "Name or service not known") does not say why by itself.
    """
    names = []
    for holder in (getattr(item, "module", None), getattr(item, "cls", None)):
        if holder is None:
            continue
        for name, value in vars(holder).items():
            if isinstance(value, str | os.PathLike) and COLLECTION_MARK in os.fspath(value):
                names.append(f"{holder.__name__}.{name}")
    if not names:
        return
    cause = (
        f"{', '.join(names)} read the worker's environment at import, while pytest collected "
        "the suite (before any worker existed)"
    )
    message["message"] = f"{cause}: {message['message']}"[:300]
    # Last, so that the tail of the output shown in the summary has it.
    message["output"] = message.get("output", "") + (
        f"testpool: {cause}, so it holds a stand-in ({COLLECTION_MARK}) on every worker. Read "
        "TEST_BASE_URL, DATA_DIR, API_TOKEN and PORT in a fixture or in the test (or use the "
        "testpool_worker and base_url fixtures), not at import.\n"
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
