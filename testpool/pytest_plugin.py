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

This module runs inside the test process, never inside testpool; it imports nothing of testpool.
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
from typing import Any, NoReturn

import pytest

CMD_FD = "TESTPOOL_CMD_FD"
RESULT_FD = "TESTPOOL_RESULT_FD"
RESULT_FILE = "TESTPOOL_RESULT_FILE"
COLLECT_FILE = "TESTPOOL_COLLECT_FILE"
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


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("testpool_serve", False):
        config.pluginmanager.register(
            _Zygote(int(os.environ[CMD_FD]), int(os.environ[RESULT_FD])), "testpool-zygote"
        )
    elif os.environ.get(RESULT_FILE):
        config.pluginmanager.register(_OneShot(os.environ[RESULT_FILE]), "testpool-oneshot")
    if os.environ.get(COLLECT_FILE) and config.getoption("collectonly", False):
        config.pluginmanager.register(_CollectExport(os.environ[COLLECT_FILE]), "testpool-collect")


class _CollectExport:
    """Discovery: write every collected item's node id and defining file as JSON."""

    def __init__(self, path: str) -> None:
        self._path = path

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = []
        for item in session.items:
            module_file = item.nodeid.split("::", 1)[0]
            defined_in = item.location[0].replace(os.sep, "/")
            items.append([item.nodeid, module_file, defined_in])
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
    """

    def __init__(self, cmd_fd: int, result_fd: int) -> None:
        super().__init__()
        self._cmd_fd = cmd_fd
        self._result_fd = result_fd

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
        signal.signal(signal.SIGCHLD, self._reap)
        # Everything collected so far lives as long as the workers: keep it out of the
        # garbage collector's sight (fewer copy-on-write pages, much cheaper gc.collect()).
        gc.freeze()
        self._send({"ready": len(items)})
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
        if item is None:
            message = {"id": nodeid, "outcome": "missing", "duration": 0.0}
        else:
            collector.reports = []
            item._report_sections = []  # a retry on this worker starts with clean sections
            session.shouldfail = False
            session.shouldstop = False
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=keep)
            message = {"id": nodeid, **verdict(collector.reports, include_output=True)}
        channel.sendall((json.dumps(message) + "\n").encode())
    # testpool is done with this worker: finalize session fixtures, then say so (testpool stops
    # the servers only after that, since a fixture's teardown may still need its server).
    session._setupstate.teardown_exact(None)
    with contextlib.suppress(OSError):
        channel.sendall(b'{"bye": true}\n')
    channel.close()


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
