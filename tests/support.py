"""Helpers for testpool's integration tests: throwaway projects, running the real command,
polling with deadlines, and checking that nothing of ours is left behind."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from portlock import claim

REPO = Path(__file__).resolve().parents[1]
DEVSERVER = REPO / "tests" / "fixtures" / "devserver.py"
PORT_SPAN = 8


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


_next_block = 0


def allocate_ports() -> int:
    """A block of 8 free ports, distinct per pytest-xdist worker, per call, and from the ports
    any other process of ours claimed (another pytest session, a benchmark: see portlock)."""
    global _next_block
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(worker[2:]) if worker[2:].isdigit() else 0
    while True:
        base = 21000 + offset * 4000 + (_next_block % 390) * 10
        _next_block += 1
        if claim(base, PORT_SPAN):
            return base


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    @property
    def statuses(self) -> dict[str, str]:
        assert self.report is not None, self.stderr
        return {t["id"]: t["status"] for t in self.report["tests"]}

    @property
    def listing(self) -> dict[str, tuple[str, str]]:
        """``testpool list`` output as {test id: (run|cached, reason)}."""
        parsed = {}
        for line in self.stdout.split("\n"):
            parts = line.split(" ", 1)
            parts = [parts[0], *parts[1].strip(" ").split("  ", 1)] if len(parts) == 2 else parts
            if len(parts) == 3 and parts[0] in ("run", "cached"):
                parsed[parts[1]] = (parts[0], parts[2].strip())
        return parsed

    @property
    def run_id(self) -> str:
        assert self.report is not None
        return str(self.report["run_id"])


@dataclass
class Project:
    """A throwaway project that testpool runs for real, in its own temp and state folders."""

    root: Path
    port_base: int
    tmp: Path
    state: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    results_dir: str = "test-results"

    @classmethod
    def create(cls, base: Path) -> Project:
        root = base / "project"
        tmp = base / "tmp"
        state = base / "state"
        for folder in (root, tmp, state):
            folder.mkdir(parents=True, exist_ok=True)
        return cls(root, allocate_ports(), tmp, state)

    # --- files --------------------------------------------------------------------------

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def config(self, **keys: Any) -> None:
        """Write testpool.toml (or the file named by ``config_file=``); ``server`` defaults to
        the fixture dev server."""
        config_file = str(keys.pop("config_file", "testpool.toml"))
        keys.setdefault("server", f"{{python}} {DEVSERVER}")
        keys.setdefault("port_base", self.port_base)
        keys.setdefault("tests", "tests")
        keys.setdefault("startup_timeout", 20)
        self.results_dir = str(keys.get("results_dir", "test-results"))
        (self.root / config_file).write_text("\n".join(_toml_table(keys, [])) + "\n")

    # --- running ------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTPOOL_", "PYTEST_"))}
        env.update(
            TMPDIR=str(self.tmp),
            TESTPOOL_STATE_DIR=str(self.state),
            NO_COLOR="1",
            COLUMNS="200",
        )
        env.update(self.extra_env)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "testpool", *args]

    def run(self, *args: str, timeout: float = 180) -> Result:
        done = subprocess.run(
            self.command(*args), cwd=self.root, env=self.env(), capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return Result(done.returncode, done.stdout, done.stderr, self.report())

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start testpool in its own session, as a shell would start a foreground job."""
        return subprocess.Popen(
            self.command(*args), cwd=self.root, env=self.env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def run_in_terminal(
        self, *args: str, timeout: float = 180, columns: int = 120, rows: int = 40
    ) -> Result:
        """Run the installed ``testpool`` command on a pseudo-terminal, as a user would.

        The terminal is its controlling terminal and its stdin, stdout and stderr; colours are
        on (no NO_COLOR, TERM=xterm-256color). ``stdout`` is every byte it wrote to the
        terminal (stdout and stderr both), decoded; ``stderr`` is empty.
        """
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = self.env()
        for name in ("NO_COLOR", "COLUMNS", "LINES", "CI"):
            env.pop(name, None)
        env["TERM"] = "xterm-256color"
        script = str(Path(sys.executable).parent / "testpool")
        process = subprocess.Popen(
            [script, *args], cwd=self.root, env=env, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=_take_terminal,
        )  # fmt: skip
        os.close(slave)
        received = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(f"testpool did not finish on the terminal in {timeout} s")
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    if process.poll() is not None and not select.select([master], [], [], 2)[0]:
                        break  # it has exited, and nothing else writes to the terminal
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has gone
                    break
                if not chunk:
                    break
                received += chunk
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            os.close(master)
        return Result(returncode, received.decode("utf-8", "replace"), "", self.report())

    def report(self) -> dict[str, Any] | None:
        """The last run's report: ``aborted-run.json`` if the last run started no test (every
        run that does removes it), else ``report.json``."""
        for name in ("aborted-run.json", "report.json"):
            try:
                return dict(json.loads((self.root / self.results_dir / name).read_text()))
            except FileNotFoundError:
                continue
        return None

    def worker_log(self, result: Result, worker: int = 0) -> Path:
        """The log file of ``worker`` in ``result``'s run, as report.json names it."""
        assert result.report is not None
        return self.root / str(result.report["worker_logs"][str(worker)])

    def cache(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".test-cache.json").read_text()))

    # --- nothing left behind --------------------------------------------------------------

    def leftovers(self, run_ids: list[str] | None = None) -> list[str]:
        """Everything of ours still alive: processes, tmux sockets, listeners, temp folders."""
        found: list[str] = []
        ids = set(run_ids or [])
        ids |= {p.stem for p in (self.state / "runs").glob("*.json")}
        for proc in psutil.process_iter(["pid"]):
            try:
                env = proc.environ()
            except psutil.Error:
                continue
            run = env.get("TESTPOOL_RUN_ID")
            in_project = env.get("TMPDIR") == str(self.tmp)
            if run and (run in ids or in_project):
                try:
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(f"process {proc.pid} {' '.join(proc.cmdline())[:100]}")
                except psutil.Error:
                    continue
        tmux_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        for run in ids:
            if (tmux_dir / f"testpool-{run}").exists():
                found.append(f"tmux socket testpool-{run}")
        for conn in psutil.net_connections(kind="inet"):
            port = conn.laddr.port if conn.laddr else 0
            if (
                conn.status == psutil.CONN_LISTEN
                and self.port_base <= port < self.port_base + PORT_SPAN
            ):
                found.append(f"listener on {port} (pid {conn.pid})")
        found += [f"temp folder {p}" for p in self.tmp.glob("testpool-*")]
        found += [f"run record {p.name}" for p in (self.state / "runs").glob("*.json")]
        return found

    def assert_clean(self, *run_ids: str) -> None:
        # Our own cleanup is synchronous; a short deadline only absorbs kernel bookkeeping.
        try:
            wait_until(lambda: not self.leftovers(list(run_ids)), timeout=10, what="no leftovers")
        except AssertionError:
            raise AssertionError(f"left behind: {self.leftovers(list(run_ids))}") from None


def _toml_table(table: dict[str, Any], path: list[str]) -> list[str]:
    """TOML lines for ``table``: plain keys first, then sub-tables (``[a.b]``) and arrays of
    tables (``[[phases]]``)."""
    lines = [
        f"{_key(key)} = {_toml(value)}"
        for key, value in table.items()
        if not isinstance(value, dict) and not _is_table_array(value)
    ]
    for key, value in table.items():
        here = [*path, _key(key)]
        if isinstance(value, dict):
            lines += ["", f"[{'.'.join(here)}]", *_toml_table(value, here)]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{'.'.join(here)}]]", *_toml_table(item, here)]
    return lines


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def _take_terminal() -> None:
    """In the child, before exec: make stdin (the pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def send_ctrl_c(process: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(process.pid, signal.SIGINT)


def marker_waiter(path: Path) -> Callable[[], bool]:
    return path.exists
