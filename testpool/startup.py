"""Start-up: where a run's start-up time goes, and which test files to prepare first.

:class:`Timeline` holds named spans measured from the moment the testpool process started,
kept in ``report.json`` as ``startup`` (and shown by ``just bench``). The run pipeline and the
runner mark the phases they go through (discovery, secrets, the services, tmux, each worker's
health, the executor's own preparation such as pytest collecting, the first test).

:func:`files_to_prepare_first` says which test files an executor prepares before the first
test (pytest's zygote collects those, and only those, before it forks the workers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def files_to_prepare_first(
    files: Sequence[str], first_wave: int, *, workers: int, cores: int
) -> tuple[str, ...]:
    """The test files to prepare before any test starts, out of ``files`` (every file with a
    test to run, in the order their first test is handed out; the first ``first_wave`` are
    those of the first test of each worker).

    Never the files of tests that will not run (a rerun of one file collects that file, not
    the suite). And only the first wave's when the workers can afford to prepare the others
    themselves as they reach them: each worker that reaches a file prepares it again, so that
    pays off with one worker, or with two cores or more per worker; otherwise the executor
    prepares every file once, up front.
    """
    if workers <= 1 or cores >= 2 * workers:
        return tuple(files[: max(1, first_wave)])
    return tuple(files)


def process_age() -> float:
    """Seconds since this process started (its interpreter start and imports included).

    From the kernel's own clock since boot (``/proc/uptime`` and the process's start tick),
    to the hundredth of a second; psutil's create_time adds the boot time, which Linux gives
    in whole seconds, and would be off by up to a second."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # The command name (field 2) may hold spaces and parentheses: count after the last ")".
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started)


class Timeline:
    """Spans (name -> start, end) in seconds since the process started. A span begun twice
    keeps its first start; ended twice, its first end (a restart is not start-up). Once
    :meth:`freeze` is called nothing changes (``--watch``: what follows the first pass is
    not start-up either)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, age: float = 0.0) -> None:
        self._clock = clock
        self._origin = clock() - age
        self._spans: dict[str, list[float | None]] = {}
        if age > 0:
            self._spans["python and testpool imports"] = [0.0, age]
        self.facts: dict[str, Any] = {}  # e.g. {"discovery": "cached"}
        self._frozen = False

    def now(self) -> float:
        return self._clock() - self._origin

    def begin(self, name: str) -> None:
        if not self._frozen:
            self._spans.setdefault(name, [self.now(), None])

    def end(self, name: str) -> None:
        if self._frozen:
            return
        span = self._spans.setdefault(name, [self.now(), None])
        if span[1] is None:
            span[1] = self.now()

    def freeze(self) -> None:
        """Keep the spans as they are from now on (facts too are left as they are)."""
        self._frozen = True

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
