"""Where a run's consumers get their tests: the embedded queue, or one shared by machines.

The runner's consumers (one per worker) only ever talk to a :class:`WorkQueue`:

- :meth:`WorkQueue.next_for` when their worker is free (None: nothing for it right now);
- :meth:`WorkQueue.finish` when an attempt ends: the answer says whether that was the test's
  final verdict or it went back on the queue (a retry);
- :meth:`WorkQueue.wait` when there was nothing, until something may have changed;
- :meth:`WorkQueue.retire_worker` and :meth:`WorkQueue.stop` for a worker gone for good, an
  interrupt or ``--max-failures``.

:class:`LocalQueue` is the single-machine default: the pure :class:`~testpool.scheduler.Scheduler`
behind async methods. :class:`testpool.distributed.RedisQueue` shares one queue among machines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from testpool.results import Attempt, Outcome
from testpool.scheduler import Decision, Scheduler, Task


class WorkQueue(Protocol):
    async def start(self, workers: Iterable[int]) -> None:
        """The run's workers are up; hand out tests to these."""

    async def close(self) -> None:
        """The run is over (or stopping): let go of whatever is still held."""

    @property
    def done(self) -> bool:
        """Nothing will ever be handed out again (and nothing of ours is running)."""

    @property
    def live_workers(self) -> frozenset[int]: ...

    @property
    def pending(self) -> list[str]:
        """Tests still to hand out, as far as this machine knows (for the ETA)."""

    async def next_for(self, worker: int) -> Task | None: ...

    async def finish(
        self, worker: int, task: Task, outcome: Outcome, attempt: Attempt
    ) -> Decision: ...

    async def wait(self, changed: asyncio.Event) -> None:
        """Return when another ``next_for`` may have a test: ``changed`` (set by this machine's
        consumers) or, for a shared queue, after a poll interval."""

    def retire_worker(self, worker: int) -> None: ...

    def stop(self) -> list[str]:
        """Hand out nothing more; returns the tests that will not run here."""


class LocalQueue:
    """The embedded queue: a :class:`Scheduler` (pure, synchronous) for one machine."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def start(self, workers: Iterable[int]) -> None:
        return None  # the scheduler was made for them

    async def close(self) -> None:
        return None

    @property
    def done(self) -> bool:
        return self.scheduler.done

    @property
    def live_workers(self) -> frozenset[int]:
        return self.scheduler.live_workers

    @property
    def pending(self) -> list[str]:
        return self.scheduler.pending

    async def next_for(self, worker: int) -> Task | None:
        return self.scheduler.next_for(worker)

    async def finish(self, worker: int, task: Task, outcome: Outcome, attempt: Attempt) -> Decision:
        return self.scheduler.finish(worker, outcome.status)

    async def wait(self, changed: asyncio.Event) -> None:
        changed.clear()
        await changed.wait()

    def retire_worker(self, worker: int) -> None:
        self.scheduler.retire_worker(worker)

    def stop(self) -> list[str]:
        return self.scheduler.stop()
