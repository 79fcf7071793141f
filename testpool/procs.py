"""Process groups: start them, stop them in stages, and recognise our own.

Every process testpool starts (a test, a long-lived pytest, a dev server's pane) leads its own
process group, so one signal reaches it and everything it spawned. Stopping is staged:
SIGTERM to the group, up to :data:`KILL_WAIT` seconds for it to go, then SIGKILL.

Called by the executors, the pool, the interrupt path and ``testpool clean``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterable

import psutil

KILL_WAIT = 3.0  # seconds between SIGTERM and SIGKILL
RUN_ID_VARIABLE = "TESTPOOL_RUN_ID"
_POLL = 0.02
_hurry = False


def hurry() -> None:
    """Second Ctrl-C: from now on every staged stop skips straight to SIGKILL."""
    global _hurry
    _hurry = True


def reset_hurry() -> None:
    global _hurry
    _hurry = False


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group. False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours (any more): never touch it
    return True


def group_alive(pgid: int) -> bool:
    """Does any process of the group still run (zombies excluded)?"""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if pid_alive(pgid):
        return True  # the leader itself runs: no need to look further
    # killpg succeeds on a group of zombies; look closer before waiting on them.
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


async def terminate_group(pgid: int, grace: float = KILL_WAIT) -> None:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    # SIGCONT so a stopped process can act on the SIGTERM.
    signal_group(pgid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not _hurry:
        if not group_alive(pgid):
            return
        await asyncio.sleep(_POLL)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
    await _wait_gone(pgid, 1.0)


def terminate_groups(pgids: Iterable[int], grace: float = KILL_WAIT) -> None:
    """Blocking version for many groups at once: all get SIGTERM, one shared deadline."""
    pending = [pgid for pgid in set(pgids) if signal_group(pgid, signal.SIGTERM)]
    for pgid in pending:
        signal_group(pgid, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = [pgid for pgid in pending if group_alive(pgid)]
        if pending:
            time.sleep(_POLL)
    for pgid in pending:
        if group_alive(pgid):
            signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while pending and time.monotonic() < deadline:
        pending = [pgid for pgid in pending if group_alive(pgid)]
        if pending:
            time.sleep(_POLL)


async def wait_groups_gone(pgids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` for process groups to end on their own; returns those still alive."""
    pending = list(pgids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline and not _hurry:
        pending = [pgid for pgid in pending if group_alive(pgid)]
        if pending:
            await asyncio.sleep(_POLL)
    return [pgid for pgid in pending if group_alive(pgid)]


def kill_group_now(pgid: int) -> None:
    signal_group(pgid, signal.SIGKILL)


async def _wait_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_alive(pgid):
        await asyncio.sleep(_POLL)


def pid_alive(pid: int) -> bool:
    """Is ``pid`` a live (non-zombie) process?"""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_time(pid: int) -> float | None:
    """When ``pid`` started (to tell it apart from a later process that reuses the number)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_same_process(pid: int, recorded_start: float | None) -> bool:
    """Is ``pid`` still the process we recorded (same start time)?"""
    if recorded_start is None:
        return False
    current = start_time(pid)
    return current is not None and abs(current - recorded_start) < 0.05


def processes_of_run(run_id: str) -> list[psutil.Process]:
    """Live processes that carry ``TESTPOOL_RUN_ID=<run_id>`` in their environment.

    Every test, long-lived pytest and dev server of a run has it, so this finds even a
    process that left its group. Processes we cannot read (other users') are skipped.
    """
    found: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if (
                proc.environ().get(RUN_ID_VARIABLE) == run_id
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_processes(processes: list[psutil.Process], grace: float = KILL_WAIT) -> None:
    """SIGTERM, wait, SIGKILL for individual processes (already verified as ours)."""
    for proc in processes:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=1.0)


def listeners(ports: Iterable[int]) -> dict[int, str]:
    """Who listens on each of ``ports`` (``"pid 123 (python3)"`` where it can be read)."""
    wanted = set(ports)
    found: dict[int, str] = {}
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.Error:
        return found
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port not in wanted:
            continue
        holder = "an unknown process"
        if conn.pid:
            try:
                holder = f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                holder = f"pid {conn.pid}"
        found.setdefault(conn.laddr.port, holder)
    return found


def session_listeners(leader: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the processes in the session (or process
    group) that ``leader`` leads: a worker's server and whatever it started (npm's node)."""
    found: list[tuple[str, int]] = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) != leader and os.getpgid(proc.pid) != leader:
                continue
            # net_connections since psutil 6; connections before.
            connections = getattr(proc, "net_connections", None) or proc.connections
            connections = connections(kind="tcp")
        except (OSError, psutil.Error):
            continue
        found += [
            (conn.laddr.ip, conn.laddr.port)
            for conn in connections
            if conn.status == psutil.CONN_LISTEN and conn.laddr
        ]
    return found


def session_cpu(leader: int) -> float:
    """CPU seconds (user + system) used so far by ``leader`` and every process below it,
    including descendants that have already exited and been waited for (a compiler run by
    ``go run``, npm's shell): what a worker's server start cost. 0.0 if it is gone."""
    try:
        root = psutil.Process(leader)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # ended meanwhile: its parent's children_* hold it once it is waited for
        total += times.user + times.system + times.children_user + times.children_system
    return total


async def watch_exit(pid: int, poll: float = 0.2) -> None:
    """Return when ``pid`` exits: at once through a pidfd where Linux offers one, else by polling."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while pid_alive(pid):
            await asyncio.sleep(poll)
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
