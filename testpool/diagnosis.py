"""What testpool can see of a dev server that does not become healthy.

Most servers that never answer their health check are misconfigured in one of a few ways, all
visible from outside: they listen on a port of their own (a hard-coded 8888 that ignores
``PORT``), on an address ``127.0.0.1`` does not reach (``::1``, which Node's ``localhost`` may
pick), or their health path answers something other than 200 (a redirect to a login page, a
404). :class:`PortWatch` notices the first two while the pool waits, so a run fails within
seconds with the cause instead of at ``startup_timeout`` with "no answer".

Pure logic: the listeners come from a callable (``procs.session_listeners`` in real life) and
time from an injectable clock. Called by the pool while a worker starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# How long a server may listen elsewhere, and not on its port, before we call it a mistake:
# some servers open a debug or metrics port first and their own a moment later.
WRONG_PORT_GRACE = 2.0
LISTEN_CHECK_INTERVAL = 0.5
# Addresses a connection to 127.0.0.1 reaches (the wildcards, and IPv4 loopback mapped to v6).
_REACHABLE = frozenset({"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"})


@dataclass(frozen=True, order=True)
class Listener:
    """One listening socket of the server's processes."""

    port: int
    address: str

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def describe(listeners: Sequence[Listener], port: int) -> str | None:
    """Why a server with these listeners cannot answer on 127.0.0.1:``port`` (None: it can,
    or it listens nowhere yet)."""
    if not listeners:
        return None
    if any(item.port == port and item.address in _REACHABLE for item in listeners):
        return None
    on_port = [item for item in listeners if item.port == port]
    if on_port:
        where = ", ".join(str(item) for item in sorted(set(on_port)))
        return (
            f"the server listens on {where}, which 127.0.0.1:{port} does not reach: make it "
            "bind 127.0.0.1 (or 0.0.0.0)"
        )
    ports = sorted({item.port for item in listeners})
    listed = " and ".join(str(p) for p in ports) if len(ports) <= 3 else f"{ports[0]} and others"
    return (
        f"the server is listening on {listed}, not {port}: does it read PORT? (or give it "
        "{port} in 'server', 'env' or a 'files' template)"
    )


def timeout_hint(listeners: Sequence[Listener], port: int) -> str:
    """What to add to a health timeout's message about where the server listens."""
    if not listeners:
        return f"the server listens on no port (it should listen on {port})"
    return describe(listeners, port) or ""


class PortWatch:
    """Decides, while a worker starts, that its server listens in the wrong place."""

    def __init__(
        self,
        listeners: Callable[[], Sequence[Listener]],
        port: int,
        *,
        grace: float = WRONG_PORT_GRACE,
        interval: float = LISTEN_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listeners = listeners
        self.port = port
        self.grace = grace
        self.interval = interval
        self.clock = clock
        self._checked_at: float | None = None
        self._wrong_since: float | None = None

    def check(self) -> str | None:
        """The diagnosis once the server has listened only in the wrong place for ``grace``
        seconds; None before (looks at the processes at most every ``interval``)."""
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.interval:
            return None
        self._checked_at = now
        problem = describe(self._listeners(), self.port)
        if problem is None:
            self._wrong_since = None
            return None
        if self._wrong_since is None:
            self._wrong_since = now
        return problem if now - self._wrong_since >= self.grace else None
