"""The one module that talks to tmux (through libtmux).

A run owns one tmux server on a private socket (``testpool-<run id>``), started with no user
configuration (``-f /dev/null``), and one session per worker. Each tmux call is a single
invocation: creating a worker's session, keeping its pane after the server exits (so a crash is
readable) and piping its output to a log all happen in one command list, before tmux reads a
byte of the pane, so not even the first line of a server that dies at once is lost.

Called by the pool (start, spawn, inspect, stop) and by ``testpool clean`` (kill a dead run's
server). Everything raises :class:`~testpool.errors.InfrastructureError` on failure.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testpool.errors import InfrastructureError

if TYPE_CHECKING:
    from collections.abc import Iterator

SOCKET_PREFIX = "testpool"
# Variables that would point a worker at the user's own tmux, not at ours.
TMUX_VARIABLES = ("TMUX", "TMUX_PANE")


def tmux_binary() -> str:
    """Path of tmux, or an infrastructure error saying how to get it."""
    found = shutil.which("tmux")
    if not found:
        raise InfrastructureError("tmux is not installed (testpool runs each worker in tmux)")
    return found


@dataclass(frozen=True)
class SpawnSpec:
    """One worker session: ``command`` in ``cwd`` with ``environment`` set on the session
    (``new-session -e``, overriding the server's global environment for this worker only), its
    output piped to ``log_command``. The pane's pid leads the server's process group."""

    session: str
    command: str
    cwd: Path
    environment: Mapping[str, str]
    log_command: str

    def arguments(self) -> list[str]:
        args = [
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            "200",
            "-y",
            "50",
            "-c",
            str(self.cwd),
        ]
        args += [f"-e{name}={value}" for name, value in self.environment.items()]
        args += ["-P", "-F", "#{pane_pid}", self.command]
        # Same call: the pipe is in place before tmux reads the pane's first byte.
        return [*args, ";", "pipe-pane", "-o", "-t", f"={self.session}:", self.log_command]


def _pids(output: list[str], expected: int) -> list[int]:
    try:
        pids = [int(line) for line in output if line.strip()]
    except ValueError:
        pids = []
    if len(pids) != expected:
        raise InfrastructureError(
            f"tmux reported {len(pids)} pane pid(s) for {expected} session(s)"
        )
    return pids


class TmuxServer:
    """A private tmux server for one run. Not thread-safe; the pool serializes calls."""

    def __init__(self, socket_name: str) -> None:
        if not socket_name.startswith(SOCKET_PREFIX):
            raise ValueError("testpool only drives tmux servers on its own sockets")
        tmux_binary()
        import libtmux  # deferred: a fully cached run never needs it

        self.socket_name = socket_name
        self._server = libtmux.Server(socket_name=socket_name, config_file="/dev/null")

    def start(self, environment: Mapping[str, str], spawns: list[SpawnSpec]) -> list[int]:
        """Start the server and every first worker session in one tmux call; return pane pids.

        ``environment`` becomes the server's global environment: secrets reach the workers
        through it rather than on a command line, where any user could read them in the
        process list. One call for everything keeps N workers' start as cheap as one's.
        """
        args = [
            "start-server",
            ";", "set-option", "-g", "exit-empty", "off",
            ";", "set-option", "-g", "history-limit", "5000",
            ";", "set-option", "-g", "-w", "remain-on-exit", "on",
        ]  # fmt: skip
        for spec in spawns:
            args += [";", *spec.arguments()]
        with _patched_environ(environment):
            output = self._run(*args)
        return _pids(output, len(spawns))

    def spawn(self, spec: SpawnSpec) -> int:
        """Create one more worker session (a restart); returns its pane's pid."""
        return _pids(self._run(*spec.arguments()), 1)[0]

    def capture(self, session: str, lines: int = 40) -> str:
        """The last ``lines`` lines the pane showed (a fallback when the log is empty)."""
        proc = self._server.cmd("capture-pane", "-p", "-J", "-t", f"={session}:", "-S", f"-{lines}")
        return "\n".join(proc.stdout).rstrip() if proc.returncode == 0 else ""

    def exit_status(self, session: str) -> str | None:
        """How the pane's command ended (``status 3``, ``signal 9``), or None while it runs
        (or when tmux does not know the session, or does not know the status yet)."""
        proc = self._server.cmd(
            "list-panes", "-t", f"={session}:", "-F",
            "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}",
        )  # fmt: skip
        if proc.returncode != 0 or not proc.stdout:
            return None
        dead, status, signal_number = [*proc.stdout[0].strip().split(":"), "", ""][:3]
        # tmux marks the pane dead when its terminal closes, and learns the status a moment
        # later, when it reaps the process.
        if dead != "1":
            return None
        if not (status or signal_number):
            self._nudge()
            return None
        if signal_number and signal_number != "0":
            return f"signal {signal_number}"
        return f"status {status}"

    def _nudge(self) -> None:
        """Make tmux reap its exited children now.

        tmux closes a dead pane's terminal through libutempter, which runs a helper with
        SIGCHLD set to its default for a moment; the pane's own SIGCHLD, if it lands in that
        moment, is lost, and tmux only reaps the pane (and learns its exit status) at its next
        SIGCHLD. One from us is harmless: tmux then looks for exited children.
        """
        proc = self._server.cmd("display-message", "-p", "#{pid}")
        try:
            os.kill(int(proc.stdout[0]), signal.SIGCHLD)
        except (IndexError, ValueError, OSError):
            pass

    def kill_session(self, session: str) -> None:
        self._server.cmd("kill-session", "-t", f"={session}")

    def is_alive(self) -> bool:
        return bool(self._server.cmd("list-sessions").returncode == 0)

    def kill(self) -> None:
        """Kill the server and remove its socket file (tmux leaves it behind)."""
        socket_path = self.socket_path()
        self._server.cmd("kill-server")
        if socket_path is not None:
            try:
                socket_path.unlink()
            except FileNotFoundError:
                pass

    def socket_path(self) -> Path | None:
        """Where tmux keeps this server's socket (``$TMUX_TMPDIR/tmux-UID/NAME``)."""
        base = os.environ.get("TMUX_TMPDIR") or "/tmp"
        return Path(base) / f"tmux-{os.getuid()}" / self.socket_name

    def _run(self, *args: str) -> list[str]:
        proc = self._server.cmd(*args)
        if proc.returncode != 0:
            message = " ".join(proc.stderr) or f"exit status {proc.returncode}"
            raise InfrastructureError(f"tmux {args[0]} failed: {message}")
        return list(proc.stdout)


def log_pipe_command(path: Path) -> str:
    """The ``pipe-pane`` command that appends a pane's output to ``path``."""
    return f"exec cat >> {shlex.quote(str(path))}"


@contextmanager
def _patched_environ(environment: Mapping[str, str]) -> Iterator[None]:
    """Run one tmux call with ``environment`` as the process environment.

    libtmux starts tmux with this process's environment and offers no other way to pass one,
    so the environment is swapped for the duration of that one call (testpool calls tmux from
    its event loop thread only).
    """
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({k: v for k, v in environment.items() if k not in TMUX_VARIABLES})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
