"""Which test runs next, on which worker, and what a finished attempt means.

Pure bookkeeping: no I/O, no asyncio, no clock. The runner's consumers call it:

- :meth:`Scheduler.next_for` when a worker is free and wants a test;
- :meth:`Scheduler.finish` when an attempt ends, with its status; the answer says whether that
  was the test's final verdict or it has gone back on the queue (a retry);
- :meth:`Scheduler.retire_worker` when a worker is gone for good;
- :meth:`Scheduler.stop` on ``--max-failures`` or an interrupt, which hands back what never ran.

Order: longest recorded duration first (tests with no record are given the mean of the known
ones), ties and the no-durations case in discovery order. A retry goes to the front of the
queue and to another worker when one is alive. ``max_running=1`` hands out one test at a time
whatever the number of workers (a sequential phase; the run makes one scheduler per phase).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from testpool.results import Status


@dataclass(frozen=True)
class Task:
    """One attempt to hand to a worker. ``attempt`` counts from 1."""

    test_id: str
    attempt: int


@dataclass(frozen=True)
class Decision:
    """What :meth:`Scheduler.finish` concluded. ``final`` is None when the test was requeued."""

    final: Status | None

    @property
    def requeued(self) -> bool:
        return self.final is None


@dataclass
class _Entry:
    test_id: str
    attempts: int = 0
    failures: int = 0  # attempts that failed or timed out
    infra_errors: int = 0  # attempts lost to a dead worker
    avoid: set[int] = field(default_factory=set)  # workers it already failed on


class Scheduler:
    """See the module docstring."""

    def __init__(
        self,
        tests: Sequence[str],
        *,
        workers: Iterable[int],
        durations: Mapping[str, float] | None = None,
        retries: int = 0,
        max_failures: int | None = None,
        max_running: int | None = None,
    ) -> None:
        if len(set(tests)) != len(tests):
            raise ValueError("duplicate test ids")
        self._retries = retries
        self._max_failures = max_failures
        self._max_running = max_running
        self._pending = [_Entry(test_id) for test_id in order_tests(tests, durations or {})]
        self._running: dict[int, _Entry] = {}
        self._live = set(workers)
        self._final_failures = 0
        self._stopped = False
        self._dropped: list[str] = []

    # --- questions -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Nothing left to hand out and nothing running."""
        return not self._running and (self._stopped or not self._pending)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def pending(self) -> list[str]:
        return [entry.test_id for entry in self._pending]

    @property
    def not_run(self) -> list[str]:
        """Tests dropped by :meth:`stop` (including a stop caused by ``max_failures``)."""
        return list(self._dropped)

    @property
    def live_workers(self) -> frozenset[int]:
        return frozenset(self._live)

    # --- events ----------------------------------------------------------------------------

    def next_for(self, worker: int) -> Task | None:
        """The next attempt for a free ``worker``, or None if there is nothing it should take."""
        if self._stopped or worker not in self._live:
            return None
        if worker in self._running:
            raise RuntimeError(f"worker {worker} asked for a test while running one")
        if self._max_running is not None and len(self._running) >= self._max_running:
            return None
        for index, entry in enumerate(self._pending):
            others_can = bool(self._live - entry.avoid - {worker})
            if worker in entry.avoid and others_can:
                continue
            del self._pending[index]
            entry.attempts += 1
            self._running[worker] = entry
            return Task(entry.test_id, entry.attempts)
        return None

    def finish(self, worker: int, status: Status) -> Decision:
        """Record the end of the attempt running on ``worker`` and decide what follows."""
        entry = self._running.pop(worker)
        if status is Status.PASSED:
            return self._final(Status.FLAKY if entry.failures else Status.PASSED)
        if status is Status.SKIPPED:
            return self._final(Status.SKIPPED)
        if status is Status.ERROR:
            entry.infra_errors += 1
            if entry.infra_errors == 1 and not self._stopped:
                return self._requeue(entry, worker)
            return self._final(Status.ERROR)
        if status in (Status.FAILED, Status.TIMEOUT):
            entry.failures += 1
            if entry.failures <= self._retries and not self._stopped:
                return self._requeue(entry, worker)
            return self._final(status)
        raise ValueError(f"an attempt cannot end as {status.value!r}")

    def retire_worker(self, worker: int) -> str | None:
        """Take ``worker`` out of the pool. Returns the test it was running, if any.

        The returned test is not requeued here: the caller reports it through :meth:`finish`
        (as an infrastructure error) before or after retiring, exactly once.
        """
        self._live.discard(worker)
        entry = self._running.get(worker)
        return entry.test_id if entry else None

    def stop(self) -> list[str]:
        """Hand out nothing more. Returns the tests that will not run (in queue order)."""
        self._stopped = True
        never_ran = [entry.test_id for entry in self._pending]
        self._pending.clear()
        self._dropped.extend(never_ran)
        return never_ran

    # --- helpers ---------------------------------------------------------------------------

    def _requeue(self, entry: _Entry, worker: int) -> Decision:
        entry.avoid.add(worker)
        self._pending.insert(0, entry)
        return Decision(None)

    def _final(self, status: Status) -> Decision:
        if status.is_failure:
            self._final_failures += 1
            if self._max_failures is not None and self._final_failures >= self._max_failures:
                self.stop()
        return Decision(status)


def order_tests(tests: Sequence[str], durations: Mapping[str, float]) -> list[str]:
    """Longest first by recorded duration; unknown tests count as the mean of the known."""
    known = [durations[t] for t in tests if t in durations]
    if not known:
        return list(tests)
    default = sum(known) / len(known)
    # sorted() is stable, so equal estimates keep discovery order.
    return sorted(tests, key=lambda test: -durations.get(test, default))
