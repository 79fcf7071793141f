"""Where a run's start-up time goes: named spans measured from the moment the testpool process
started, kept in ``report.json`` as ``startup`` (and shown by ``just bench``).

The run pipeline and the runner mark the phases they go through (discovery, secrets, the
services, tmux, each worker's health, the executor's own preparation such as pytest
collecting, the first test); nothing here decides anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def process_age() -> float:
    """Seconds since this process started (its interpreter start and imports included)."""
    import psutil

    try:
        return max(0.0, time.time() - psutil.Process().create_time())
    except psutil.Error:
        return 0.0


class Timeline:
    """Spans (name -> start, end) in seconds since the process started. A span begun twice
    keeps its first start; ended twice, its first end (a restart is not start-up)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, age: float = 0.0) -> None:
        self._clock = clock
        self._origin = clock() - age
        self._spans: dict[str, list[float | None]] = {}
        if age > 0:
            self._spans["python and testpool imports"] = [0.0, age]
        self.facts: dict[str, Any] = {}  # e.g. {"discovery": "cached"}

    def now(self) -> float:
        return self._clock() - self._origin

    def begin(self, name: str) -> None:
        self._spans.setdefault(name, [self.now(), None])

    def end(self, name: str) -> None:
        span = self._spans.setdefault(name, [self.now(), None])
        if span[1] is None:
            span[1] = self.now()

    def mark(self, name: str) -> None:
        """A moment rather than a span (e.g. the first test started)."""
        self.begin(name)
        self.end(name)

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def get(self, name: str) -> tuple[float, float | None] | None:
        span = self._spans.get(name)
        if span is None or span[0] is None:
            return None
        return span[0], span[1]

    def to_dict(self) -> dict[str, Any]:
        """``{"since": ..., **facts, "phases": [{"name", "start", "end", "seconds"}, ...]}``,
        the phases in the order they began (a span never ended has no end)."""
        phases = []
        ordered = sorted(self._spans.items(), key=lambda item: item[1][0] or 0.0)
        for name, (start, end) in ordered:
            assert start is not None
            phase: dict[str, Any] = {"name": name, "start": round(start, 4)}
            if end is not None:
                phase["end"] = round(end, 4)
                phase["seconds"] = round(end - start, 4)
            phases.append(phase)
        return {"since": "process start", **self.facts, "phases": phases}
