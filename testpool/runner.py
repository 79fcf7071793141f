"""The orchestrator of one run: routes events between the pool, the scheduler, the executors,
the cache recorder and the reporter. It decides nothing itself.

Lifecycle (:meth:`Run.execute`): decrypt secrets → record the run (journal + reaper) → start
the shared services the tests need (the workers' own first) → launch the workers and, at the
same time, prepare the executors → phase after phase, one consumer per worker pulls tests from
that phase's scheduler until it is done (a failed required phase ends the run early) → stop
everything in stages, the services last, and remove what we made → write the reports. A
service that dies meanwhile is restarted while the tests that needed it are retried, or ends
the run. Every exit path goes through the same cleanup: success, failures, a worker
that would not start, an exception, Ctrl-C or SIGTERM (first: stop gracefully; second: kill now).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from testpool import procs
from testpool.cache import CacheEntry, CacheStore, PlanItem, now_iso
from testpool.errors import CacheError, InfrastructureError, ServiceError, TestpoolError
from testpool.evidence import EvidenceCollector
from testpool.execution import ProcessTracker
from testpool.fsutil import display_path, safe_filename
from testpool.phases import Phase, failed, phase_of, split
from testpool.placeholders import collection_values, render_env
from testpool.pool import Pool, PoolSettings, RunSettings, Worker, WorkerState, check_ports
from testpool.procs import RUN_ID_VARIABLE
from testpool.queues import LocalQueue, WorkQueue
from testpool.report.render import Board, WorkerView, phase_label
from testpool.requirements import closure, needed
from testpool.results import (
    Attempt,
    Outcome,
    PhaseResult,
    RunSummary,
    Status,
    TestResult,
    cached_result,
)
from testpool.runners.base import ExecContext, TestCase, WorkerContext
from testpool.scheduler import Scheduler, order_tests
from testpool.secrets import Redactor, load_secrets
from testpool.services import Services, ServiceSettings
from testpool.startup import Timeline
from testpool.state import RunJournal, RunScope
from testpool.workerenv import collection_env

if TYPE_CHECKING:
    from testpool.config import Config, RunOptions
    from testpool.report.console import PlainReporter
    from testpool.report.files import RunLogs
    from testpool.runners.base import Executor, Runner, WorkerExecutor

T = TypeVar("T")


class WatchLoop(Protocol):
    """What keeps a run going after its first pass (``--watch``, see :mod:`testpool.watch`)."""

    async def serve(self, run: Run) -> None:
        """Run further passes on this run's pool until it is time to stop (Ctrl-C cancels it)."""


CACHE_FLUSH_INTERVAL = 1.0
WIND_DOWN = 1.0  # seconds executor processes get to exit on their own before the staged stop
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CacheRecorder:
    """Collects final results and merges them into the cache file at most once a second,
    off the event loop, and once more at the end (so an interrupted run keeps what finished).
    A cache that cannot be written is a warning, never the end of the run."""

    def __init__(
        self,
        store: CacheStore,
        inputs: Mapping[str, Mapping[str, str]],
        salt: str,
    ) -> None:
        self.store = store
        self.salt = salt
        self.inputs = inputs
        self.reasons: Mapping[str, str] = {}  # why the plan ran each test (`testpool explain`)
        self.secret_names: tuple[str, ...] = ()
        self.stats: dict[str, dict[str, Any]] = {}  # run-wide measurements, written at the end
        self.warn: Callable[[str], None] = lambda message: None
        self._pending: dict[str, CacheEntry] = {}
        self._warned = False

    def add(self, result: TestResult) -> None:
        if result.status in (Status.NOT_RUN, Status.CACHED) or result.id not in self.inputs:
            return
        self._pending[result.id] = CacheEntry(
            result.status, result.duration, now_iso(), self.inputs[result.id], self.secret_names,
            reason=self.reasons.get(result.id, ""),
        )  # fmt: skip

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(CACHE_FLUSH_INTERVAL)
            await self._flush()

    def flush(self) -> None:
        batch, self._pending = self._pending, {}
        self._write(batch, self.stats)

    async def flush_now(self) -> None:
        """Write what is pending now (off the event loop), e.g. after a --watch pass."""
        await self._flush(self.stats)

    async def _flush(self, stats: dict[str, dict[str, Any]] | None = None) -> None:
        # The batch is taken here, on the loop, so add() never races the writing thread.
        batch, self._pending = self._pending, {}
        if not await asyncio.to_thread(self._write, batch, stats):
            self._pending = {**batch, **self._pending}  # try again with the next batch

    def _write(
        self, batch: dict[str, CacheEntry], stats: dict[str, dict[str, Any]] | None = None
    ) -> bool:
        try:
            self.store.record(batch, salt=self.salt, stats=stats)
        except CacheError as error:
            if not self._warned:
                self._warned = True
                self.warn(error.message)
            return False
        return True


class Run:
    """One run of the tests that the cache did not skip."""

    def __init__(
        self,
        config: Config,
        options: RunOptions,
        runner: Runner,
        *,
        to_run: list[PlanItem],
        cached: list[PlanItem],
        order: list[str],
        durations: Mapping[str, float],
        store: CacheStore,
        salt: str,
        reporter: PlainReporter,
        scope: RunScope,
        logs: RunLogs,
        queue: WorkQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
        watch: WatchLoop | None = None,
        timeline: Timeline | None = None,
        workers_choice: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        # Where the start-up time went (report.json's startup: with --watch, the first pass's)
        self.timeline = timeline or Timeline(clock)
        self.workers_choice = dict(workers_choice) if workers_choice else None
        self.options = options
        self.runner = runner
        self.durations = durations
        self.reporter = reporter
        self.clock = clock
        self.scope = scope
        self.run_id = scope.run_id
        self.run_logs = logs
        # --watch: after the first pass the pool stays up and this loop runs further passes.
        self.watch = watch
        self.recorder = CacheRecorder(store, {}, salt)  # what to record: see _plan
        self.recorder.warn = lambda message: self.reporter.note(f"testpool: warning: {message}")
        self._plan(to_run, cached, order)
        self.results: dict[str, TestResult] = {}
        self.attempts: dict[str, list[Attempt]] = defaultdict(list)
        self.logs: dict[str, list[str]] = defaultdict(list)
        self.infra_events: list[str] = []
        self.timed_events: list[dict[str, Any]] = []  # the same, with when and where
        self.interrupted = False
        self.error: TestpoolError | None = None
        self.redact = Redactor([])
        self.evidence = EvidenceCollector()
        self._log_spans: dict[int, tuple[int, int]] = {}  # worker -> its last attempt's
        self.tracker = ProcessTracker()
        self.sessions: dict[int, WorkerExecutor] = {}
        self.executor: Executor | None = None
        self.pool: Pool | None = None
        self.services: Services | None = None
        # Where the tests come from: the embedded queue of the phase that runs (one per phase),
        # unless one shared by machines is given.
        self.shared_queue = queue
        self.queue: WorkQueue | None = None
        self._changed = asyncio.Event()
        # Cleared while a shared service is down (it is being restarted): no test starts.
        self._services_up = asyncio.Event()
        self._services_up.set()
        self._supervisor: asyncio.Task[None] | None = None
        self._fresh_data: dict[int, bool] = {}  # worker -> its DATA_DIR is untouched
        self._phase_times: dict[str, float] = {}  # phases that began -> their wall time
        self._stop_reason = ""  # why the later phases do not run
        self._ready_at: dict[int, float] = {}
        self._cleaning = False
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self._started = 0.0
        self._started_unix = 0.0
        self._started_at = ""
        self._pass_started = 0.0

    def _plan(self, to_run: list[PlanItem], cached: list[PlanItem], order: list[str]) -> None:
        """What this run (or, with --watch, this pass) runs, and in which phases."""
        self.to_run = to_run
        self.cached = cached
        self.order = order
        self.cases: dict[str, TestCase] = {item.case.id: item.case for item in to_run}
        every_case = [item.case for item in [*to_run, *cached]]
        self.phase_of = {case.id: phase_of(case, self.config) for case in every_case}
        order_index = {test_id: index for index, test_id in enumerate(order)}
        self.phases: list[Phase] = split(
            sorted(every_case, key=lambda case: order_index.get(case.id, 0)), self.config
        )
        self.recorder.inputs = {item.case.id: item.inputs for item in to_run}
        self.recorder.reasons = {item.case.id: item.reason for item in to_run}
        self._needs: dict[str, tuple[str, ...]] = {}  # test id -> the services it uses
        self._server_services: tuple[str, ...] = ()  # the workers' server's (set with the pool)

    # --- the whole run ---------------------------------------------------------------------

    async def execute(self) -> RunSummary:
        self._started = self._pass_started = self.clock()
        self._started_unix = time.time()
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")
        main = asyncio.current_task()
        assert main is not None
        self._install_signal_handlers(main)
        flusher: asyncio.Task[None] | None = None
        try:
            with self.timeline.span("secrets"):
                secrets = load_secrets([self.config.path(p) for p in self.config.secrets])
            self.redact = Redactor.for_secrets(secrets)
            self.evidence.redact = self.redact
            self.recorder.secret_names = tuple(sorted(secrets))
            journal = self.scope.journal()
            self.tracker = ProcessTracker(journal)
            scratch = self.scope.folder()
            flusher = asyncio.ensure_future(self.recorder.flush_periodically())
            try:
                await self._run_all(secrets, scratch, journal)
            except asyncio.CancelledError:
                if not self.interrupted:
                    raise
                main.uncancel()
            except InfrastructureError as error:
                self.error = error
        finally:
            if flusher is not None:
                flusher.cancel()
            await self._cleanup()
            self.recorder.flush()
            self._remove_signal_handlers()
        return self._summary()

    async def _run_all(
        self, secrets: Mapping[str, str], scratch: Path, journal: RunJournal
    ) -> None:
        # With --watch every worker starts (a change may rerun any test), as does every
        # service a test of the suite needs.
        configured = self.config.worker_count
        count = configured if self.watch else min(configured, len(self.to_run))
        suite = [item.case for item in [*self.to_run, *self.cached]] if self.watch else []
        run = RunSettings(
            config=self.config,
            run_id=self.run_id,
            secrets=secrets,
            redact=self.redact,
            scratch=scratch,
            logs_dir=self.run_logs.folder,
            journal=journal,
        )
        services = self.services = Services(
            ServiceSettings(
                **vars(run),
                avoid_ports=frozenset(self.config.port(index) for index in range(count)),
            )
        )
        services.allocate(needed(suite or self.cases.values(), self.config))
        services.on_death(self._services_up.clear)
        self._server_services = self.config.services_for_server()  # (reads the templates)
        server_services = closure(self._server_services, self.config.services)
        pool = self.pool = Pool(
            PoolSettings(
                # NAME_PORT and NAME_URL reach every server and test
                **vars(replace(run, base_environ={**os.environ, **services.environment})),
                # {services.NAME.port} in server, env, health_path, files
                values=services.placeholder_values(),
            )
        )
        outside = {
            **collection_values(self.run_id, self.config.services),
            **services.placeholder_values(),
        }
        base_env = {**os.environ, **render_env(self.config.env, outside)}
        common_env = {**pool.global_env(), RUN_ID_VARIABLE: self.run_id}
        context = ExecContext(
            root=self.config.root,
            scratch=scratch,
            tracker=self.tracker,
            redact=self.redact,
            base_env=base_env,
            common_env=common_env,
            collection_env=collection_env(common_env, configured={*self.config.env, *secrets}),
            timeline=self.timeline,
            first_files=self._first_files(count) if self.shared_queue is None else (),
        )
        if services.names:
            # A taken worker port ends the run anyway: find out before starting a database.
            check_ports([self.config.port(index) for index in range(count)])
            self.timeline.begin("services")
        services.launch()
        if services.names:
            self.reporter.note(
                f"services: {services.describe()} (logs: "
                f"{display_path(self.run_logs.folder / 'services', self.config.root)})"
            )
        executor = self.executor = self.runner.executor(context)
        await executor.warm_up()
        await services.ready(server_services)  # the workers' servers need these
        with self.timeline.span("tmux launch"):
            workers = pool.launch(count)
        for worker in workers:
            self.timeline.begin(f"worker {worker.index} healthy")
        pool.on_change(self._worker_changed)
        self.reporter.start(self._board(workers))
        self.reporter.note(f"workers: {pool.attach_hint} (while it runs)")
        preparing = asyncio.ensure_future(executor.prepare([item.case for item in self.to_run]))
        try:
            await _all_or_nothing(
                [*(self._bring_up(worker, executor) for worker in workers), services.ready()]
            )
            decided = await preparing
        finally:
            if not preparing.done():
                preparing.cancel()
                await asyncio.gather(preparing, return_exceptions=True)
        if services.names:
            self.timeline.end("services")
        self._record_server_cost(workers)
        if services.names:
            self._supervisor = asyncio.ensure_future(self._supervise_services())
        for test_id, outcome in decided.items():
            self._finalize(self.cases[test_id], outcome.status, outcome, worker=None)
        if self.shared_queue is not None:
            # The build's queue is the only one: phases are refused with --queue (app).
            self.queue = self.shared_queue
            await self.queue.start([w.index for w in workers])
            await _all_or_nothing([self._consume(worker) for worker in workers])
            return
        await self._run_phases(workers)
        if self.watch is not None and self.error is None:
            # report.json's startup is the first pass's: a test that first starts in a later
            # pass (the first ran none) did not start up then.
            self.timeline.freeze()
            await self.watch.serve(self)

    async def _run_phases(self, workers: list[Worker]) -> None:
        """Each phase in turn, on the workers still in the pool: a scheduler of its own
        (one test at a time if sequential) and one consumer per worker."""
        live = [worker.index for worker in workers]
        by_index = {worker.index: worker for worker in workers}
        for number, phase in enumerate(self.phases, start=1):
            if self._stop_reason or self.error is not None or not live:
                return
            started = self.clock()
            self._phase_times[phase.name] = 0.0  # it began (an interrupt may end it early)
            tests = [t for t in phase.tests if t in self.cases and t not in self.results]
            try:
                if tests:
                    if self.config.phases:
                        label = phase_label(
                            phase.name, number, len(self.phases), phase.mode, phase.required
                        )
                        self.reporter.phase_started(label, len(tests))
                    scheduler = Scheduler(
                        tests,
                        workers=live,
                        durations=self.durations,
                        retries=self.options.retries,
                        max_failures=self._failures_left(),
                        max_running=1 if phase.sequential else None,
                    )
                    self.queue = LocalQueue(scheduler)
                    await _all_or_nothing([self._consume(by_index[index]) for index in live])
                    live = sorted(scheduler.live_workers)
                    if scheduler.stopped and not self.interrupted and self.error is None:
                        self._stop_reason = "stopped: --max-failures reached"
            finally:
                self._phase_times[phase.name] = self.clock() - started
            statuses = {test_id: result.status for test_id, result in self.results.items()}
            if phase.required and failed(phase, statuses, fail_on_flaky=self.options.fail_on_flaky):
                self._stop_reason = f"not run: required phase '{phase.name}' failed"
                if number < len(self.phases):
                    self.reporter.note(
                        f"required phase {phase.name} failed: the later phases do not run"
                    )

    def _first_files(self, count: int) -> tuple[str, ...]:
        """The test files the executor prepares before the first test (see
        :func:`testpool.startup.files_to_prepare_first`); empty: all of them."""
        from testpool.autoworkers import available_cores
        from testpool.startup import files_to_prepare_first

        ordered = [
            test_id
            for phase in self.phases
            for test_id in order_tests([t for t in phase.tests if t in self.cases], self.durations)
        ]
        if not ordered or not all(self.cases[t].file for t in ordered):
            return ()
        files = list(dict.fromkeys(self.cases[t].file for t in ordered))
        first_wave = len({self.cases[t].file for t in ordered[:count]})
        return files_to_prepare_first(files, first_wave, workers=count, cores=available_cores())

    def _record_server_cost(self, workers: list[Worker]) -> None:
        """What one server start cost in this run (the median worker), for workers = "auto"."""
        from statistics import median

        from testpool.autoworkers import ServerCost, server_key

        if not workers:
            return
        cost = ServerCost(
            cpu=median(w.startup_cpu for w in workers),
            wall=median(w.startup_time for w in workers),
            workers=len(workers),
        )
        self.recorder.stats[server_key(self.config)] = cost.to_dict()

    def _failures_left(self) -> int | None:
        """What is left of ``--max-failures`` for the next phase."""
        if self.options.max_failures is None:
            return None
        so_far = sum(1 for result in self.results.values() if result.status.is_failure)
        return max(1, self.options.max_failures - so_far)

    async def _supervise_services(self) -> None:
        """Restart a service that dies while the run goes on (no test starts meanwhile); one
        that cannot be restarted ends the run (exit 3, with its log tail)."""
        services = self.services
        assert services is not None
        while True:
            name = await services.wait_for_death(services.names)
            self._services_up.clear()
            ended = services.how_it_ended(services.services[name])
            self.infra_events.append(f"service {name} {ended} during the run; restarting it")
            self._mark(f"{ended}; restarting it", service=name)
            self.reporter.note(f"service {name} {ended}; restarting it")
            try:
                await services.restart(name)
            except ServiceError as error:
                self.error = error
                if self.queue is not None:
                    self.queue.stop()
                self._services_up.set()  # let the consumers see that nothing is left to do
                self._notify()
                return
            self.reporter.note(f"service {name} restarted")
            if all(services.alive(n) for n in services.names):
                self._services_up.set()
            self._notify()

    def _needs_of(self, case: TestCase) -> tuple[str, ...]:
        """The services ``case`` uses: those it requires and the workers' server's, with
        their dependencies."""
        needs = self._needs.get(case.id)
        if needs is None:
            wanted = [*case.requires, *self._server_services]
            needs = self._needs[case.id] = tuple(closure(wanted, self.config.services))
        return needs

    async def _bring_up(self, worker: Worker, executor: Executor) -> None:
        assert self.pool is not None
        session = executor.for_worker(self._worker_context(worker))
        self.sessions[worker.index] = session
        pool = self.pool

        async def healthy() -> None:
            await pool.wait_ready(worker)
            self.timeline.end(f"worker {worker.index} healthy")

        # The executor (e.g. pytest collecting) gets ready while the server starts.
        await _all_or_nothing([healthy(), session.start()])
        self._ready_at[worker.index] = self.clock() - self._started
        self.timeline.mark(f"worker {worker.index} ready")

    def _worker_context(self, worker: Worker) -> WorkerContext:
        assert self.pool is not None
        return WorkerContext(worker.index, worker.port, worker.data_dir, self.pool.test_env(worker))

    # --- --watch: more passes on the pool that is up ----------------------------------------
    # Called by testpool.watch between passes, never while one runs.

    def live_workers(self) -> list[Worker]:
        """The workers that can take tests (not retired, not stopped by a failed renewal)."""
        gone = (WorkerState.RETIRED, WorkerState.STOPPED)
        return [w for w in self.pool.workers if w.state not in gone] if self.pool else []

    async def close_sessions(self) -> None:
        """Let every worker's executor session go (a forked pytest finalizes its session
        fixtures and exits): the code it runs is about to change."""
        sessions, self.sessions = self.sessions, {}
        await asyncio.gather(*(session.close() for session in sessions.values()))

    async def open_sessions(self) -> None:
        """A new executor session for every live worker without one (in session mode: forked
        from the suite as the zygote has it now)."""
        assert self.executor is not None
        starting = []
        for worker in self.live_workers():
            if worker.index not in self.sessions:
                session = self.executor.for_worker(self._worker_context(worker))
                self.sessions[worker.index] = session
                starting.append(session.start())
        await asyncio.gather(*starting)

    async def renew_servers(self, reason: str) -> None:
        """Replace every worker's server (its sources, seed or ``files`` changed), each on a
        fresh ``DATA_DIR``; the sessions are closed first. Raises
        :class:`~testpool.errors.WorkerStartError` if a new server does not become healthy."""
        assert self.pool is not None
        await self.close_sessions()
        await _all_or_nothing([self.pool.renew(worker, reason) for worker in self.pool.workers])
        self._fresh_data = {worker.index: True for worker in self.pool.workers}

    async def reseed(self) -> None:
        """Fresh data for the next pass: every live worker's ``DATA_DIR`` emptied and seeded
        again (its ``files`` rendered), while its server runs, as ``isolation = "test"`` does."""
        assert self.pool is not None
        pool = self.pool
        workers = self.live_workers()
        await asyncio.gather(*(asyncio.to_thread(pool.reseed, worker) for worker in workers))
        self._fresh_data = {worker.index: True for worker in workers}

    async def run_pass(
        self,
        to_run: list[PlanItem],
        cached: list[PlanItem],
        order: list[str],
        decided: Mapping[str, Outcome],
    ) -> RunSummary:
        """Run ``to_run`` on the live workers (their sessions open); ``decided`` are tests of
        ``to_run`` with a verdict already (a file that does not collect). Returns the pass's
        summary (see :meth:`finish_pass`)."""
        assert self.executor is not None
        self._plan(to_run, cached, order)
        self.results = {}
        self.attempts = defaultdict(list)
        self.logs = defaultdict(list)
        self.infra_events = []
        self._phase_times = {}
        self._stop_reason = ""
        self._pass_started = self.clock()
        workers = self.live_workers()
        self.reporter.start(self._board(workers))
        ready = await self.executor.prepare([item.case for item in to_run])
        for test_id, outcome in {**ready, **decided}.items():
            self._finalize(self.cases[test_id], outcome.status, outcome, worker=None)
        await self._run_phases(workers)
        return await self.finish_pass()

    async def finish_pass(self) -> RunSummary:
        """The pass that just ran: the live view stops, the cache file gets its results, and
        its summary (wall time: the pass's)."""
        self.reporter.stop()
        await self.recorder.flush_now()
        summary = self._summary()
        summary.wall_time = self.clock() - self._pass_started
        return summary

    # --- one consumer per worker -----------------------------------------------------------

    async def _consume(self, worker: Worker) -> None:
        queue = self.queue
        assert queue is not None and self.pool is not None
        while True:
            await self._services_up.wait()
            task = await queue.next_for(worker.index)
            if task is None:
                if queue.done or worker.index not in queue.live_workers:
                    self._notify()
                    return
                await queue.wait(self._changed)
                continue
            case = self.cases.get(task.test_id)
            if case is None:  # from a shared queue: a test this machine did not discover
                case = TestCase(task.test_id, "")
                outcome, started = _not_discovered_here(), self.clock()
            else:
                if self.config.isolation == "test" and not self._fresh_data.get(worker.index, True):
                    await asyncio.to_thread(self.pool.reseed, worker)
                self._fresh_data[worker.index] = False
                outcome, started = await self._attempt(worker, case)
            attempt = self._record_attempt(case, worker, outcome, started)
            decision = await queue.finish(worker.index, task, outcome, attempt)
            if decision.final is not None:
                self._finalize(case, decision.final, outcome, worker=worker.index)
            else:
                self.reporter.note(
                    f"RETRY    {case.id} ({outcome.status.value} on w{worker.index}: "
                    f"{outcome.message or 'no message'})"
                )
            self._notify()
            # A server whose health depends on a service that is being restarted is not judged
            # until the service is back.
            await self._services_up.wait()
            if not await self._worker_fit(worker, outcome):
                if not await self._restart(worker, outcome):
                    queue.retire_worker(worker.index)
                    self.infra_events.append(f"worker {worker.index} retired (server kept dying)")
                    self._mark("retired (server kept dying)", worker=worker.index)
                    if not queue.live_workers:
                        queue.stop()
                        self.error = InfrastructureError(
                            "every worker was retired after repeated server crashes; "
                            "see the worker logs"
                        )
                    self._notify()
                    return
                self._fresh_data[worker.index] = True

    async def _attempt(self, worker: Worker, case: TestCase) -> tuple[Outcome, float]:
        """Run one test on ``worker``; a server or a service the test uses that dies meanwhile
        ends it as an (infrastructure) error."""
        assert self.pool is not None and self.services is not None
        session = self.sessions[worker.index]
        needs = self._needs_of(case)
        started = self.clock()
        log_start = worker.log.offset()
        self.timeline.mark("first test started")
        worker.current_test, worker.since = case.id, started
        self.pool.set_state(worker, WorkerState.RUNNING)
        running = asyncio.ensure_future(session.run(case, self.config.test_timeout))
        death = asyncio.ensure_future(self.pool.wait_for_death(worker))
        watchers: set[asyncio.Future[Any]] = {death}
        service_death: asyncio.Future[str] | None = None
        if needs:
            service_death = asyncio.ensure_future(self.services.wait_for_death(needs))
            watchers.add(service_death)
        try:
            await asyncio.wait({running, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            running.cancel()
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(running, *watchers, return_exceptions=True)
            raise
        finally:
            worker.current_test = None
            self.pool.set_state(worker, WorkerState.IDLE)
            self._log_spans[worker.index] = (log_start, worker.log.offset())
        if death.done():  # its server's last words belong to this attempt's evidence
            await worker.log.settle()
            self._log_spans[worker.index] = (log_start, worker.log.offset())
        # Which service died is known from its watcher: by now it may be restarting already.
        dead = (
            service_death.result()
            if service_death is not None and service_death.done()
            else next((name for name in needs if not self.services.alive(name)), None)
        )
        server_died = death.done()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if running.done():
            outcome = running.result()
            if outcome.status in (Status.FAILED, Status.TIMEOUT) and not self.pool.alive(worker):
                outcome = _server_died(outcome)
            elif outcome.status in (Status.FAILED, Status.TIMEOUT) and dead:
                outcome = _service_died(outcome, dead)
        else:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            interrupted = Outcome(Status.ERROR, self.clock() - started)
            if dead and not server_died:
                outcome = _service_died(interrupted, dead)
            else:
                outcome = _server_died(interrupted)
        return (
            Outcome(outcome.status, outcome.duration, self.redact(outcome.output),
                    self.redact(outcome.message)),
            started,
        )  # fmt: skip

    async def _worker_fit(self, worker: Worker, outcome: Outcome) -> bool:
        """May ``worker`` take another test? (Checked after every test.)"""
        assert self.pool is not None
        if not self.pool.alive(worker):
            return False
        if outcome.status in (Status.TIMEOUT, Status.ERROR):
            return await self.pool.healthy(worker)
        return True

    async def _restart(self, worker: Worker, outcome: Outcome) -> bool:
        assert self.pool is not None
        reason = "server died" if not self.pool.alive(worker) else "server unhealthy"
        self.infra_events.append(
            f"worker {worker.index}: {reason} after {outcome.status.value} test; restarting"
        )
        self._mark(f"{reason} after {outcome.status.value} test; restarting", worker=worker.index)
        self.reporter.note(f"worker {worker.index}: {reason}; restarting it on a fresh DATA_DIR")
        await self.sessions[worker.index].close()
        if not await self.pool.restart(worker, reason):
            return False
        assert self.executor is not None
        session = self.executor.for_worker(self._worker_context(worker))
        self.sessions[worker.index] = session
        await session.start()
        return True

    def _mark(self, text: str, **where: int | str) -> None:
        """An infrastructure event on the report's timeline (``worker=`` or ``service=``)."""
        self.timed_events.append(
            {"at": round(self.clock() - self._started, 4), **where, "text": text}
        )

    # --- results ---------------------------------------------------------------------------

    def _record_attempt(
        self, case: TestCase, worker: Worker, outcome: Outcome, started: float
    ) -> Attempt:
        span = self._log_spans.pop(worker.index, None)
        evidence = None
        if outcome.status.is_failure and span is not None:
            # Now, before the worker's next test or a re-seed changes its DATA_DIR.
            evidence = self.evidence.capture(
                output=outcome.output, log=worker.log.path, span=span, data_dir=worker.data_dir
            )
        attempt = Attempt(
            worker=worker.index,
            status=outcome.status,
            duration=outcome.duration,
            started=started - self._started,
            finished=self.clock() - self._started,
            message=outcome.message,
            server_log=span,
            evidence=evidence,
        )
        self.attempts[case.id].append(attempt)
        header = (
            f"===== attempt {len(self.attempts[case.id])} on worker {worker.index} "
            f"(port {worker.port}): {outcome.status.value} in {outcome.duration:.2f}s ====="
        )
        self.logs[case.id].append(
            "\n".join(filter(None, [header, outcome.message, outcome.output]))
        )
        return attempt

    def _finalize(
        self, case: TestCase, status: Status, outcome: Outcome, *, worker: int | None
    ) -> None:
        log_path = self._write_test_log(case, outcome)
        result = TestResult(
            id=case.id,
            file=case.file,
            status=status,
            duration=outcome.duration,
            worker=worker,
            attempts=tuple(self.attempts.get(case.id, ())),
            log_path=log_path,
            message=outcome.message,
            output=outcome.output,
            phase=self.phase_of.get(case.id),
        )
        self.results[case.id] = result
        self.recorder.add(result)
        self.reporter.test_finished(result, self._remaining_estimate())

    def _write_test_log(self, case: TestCase, outcome: Outcome) -> str:
        path = self.run_logs.folder / "tests" / f"{safe_filename(case.id)}.log"
        text = "\n".join(self.logs.get(case.id) or [self.redact(outcome.output)])
        path.write_text(text + "\n")
        return display_path(path, self.config.root)

    def _remaining_estimate(self) -> float | None:
        """Seconds of test time left, from recorded durations (None when none are known)."""
        if self.queue is None or self.pool is None or not self.durations:
            return None
        default = sum(self.durations.values()) / len(self.durations)
        pending = list(self.queue.pending)
        if self.shared_queue is None and not self._stop_reason:
            # The phase that runs is in its queue; the phases still to come are not yet.
            pending += [
                test_id
                for phase in self.phases
                if phase.name not in self._phase_times
                for test_id in phase.tests
                if test_id in self.cases and test_id not in self.results
            ]
        estimate = sum(self.durations.get(t, default) for t in pending)
        now = self.clock()
        for worker in self.pool.workers:
            if worker.current_test is not None:
                expected = self.durations.get(worker.current_test, default)
                estimate += max(0.0, expected - (now - worker.since))
        return estimate

    def _summary(self) -> RunSummary:
        results: list[TestResult] = []
        cached = {item.case.id: item for item in self.cached}
        reason = (
            "interrupted"
            if self.interrupted
            else ("stopped: --max-failures reached" if self.options.max_failures else "not run")
        )
        if self.error is not None:
            reason = "not run: " + self.error.message
        if self.shared_queue is not None:
            # Other machines report the rest of the build's tests.
            known = set(self.order)
            ordered = [t for t in self.order if t in self.results]
            ordered += [t for t in self.results if t not in known]
            results = [self.results[t] for t in ordered]
        for test_id in [] if self.shared_queue is not None else self.order:
            phase = self.phase_of.get(test_id)
            if test_id in self.results:
                results.append(self.results[test_id])
            elif test_id in cached:
                results.append(cached_result(test_id, cached[test_id].case.file, phase))
            elif test_id in self.cases:
                began = phase is None or phase in self._phase_times
                message = reason if began or not self._stop_reason else self._stop_reason
                results.append(TestResult(
                    test_id, self.cases[test_id].file, Status.NOT_RUN,
                    attempts=tuple(self.attempts.get(test_id, ())), message=message,
                    phase=phase,
                ))  # fmt: skip
        workers = self.pool.workers if self.pool else []
        return RunSummary(
            run_id=self.run_id,
            results=results,
            wall_time=self.clock() - self._started,
            workers=len(workers),
            started_at=self._started_at,
            started_unix=self._started_unix,
            interrupted=self.interrupted,
            fail_on_flaky=self.options.fail_on_flaky,
            infra_events=self.infra_events,
            timed_events=self.timed_events,
            worker_logs={w.index: display_path(w.log.path, self.config.root) for w in workers},
            workers_detail=[
                {
                    "worker": w.index,
                    "port": w.port,
                    "healthy": round(w.startup_time, 4),
                    "cpu": round(w.startup_cpu, 4),  # its server's start, in CPU seconds
                    "ready": round(self._ready_at.get(w.index, 0.0), 4),
                    "restarts": w.restarts,
                }
                for w in workers
            ],
            phases=self._phase_results(results),
            services=self.services.details() if self.services else [],
            error=self.error.message if self.error else "",
            error_detail=self.error.detail if self.error else "",
            error_exit=self.error.exit_code if self.error else 0,
            startup=self.timeline.to_dict(),
            workers_choice=self.workers_choice,
        )

    def _phase_results(self, results: list[TestResult]) -> list[PhaseResult]:
        if not self.config.phases:
            return []
        statuses = {result.id: result.status for result in results}
        phases = []
        for phase in self.phases:
            if phase.name not in self._phase_times:
                outcome = "not run"
            elif failed(phase, statuses, fail_on_flaky=self.options.fail_on_flaky):
                outcome = "failed"
            elif any(statuses.get(test_id) is Status.NOT_RUN for test_id in phase.tests):
                outcome = "stopped"
            else:
                outcome = "passed"
            phases.append(
                PhaseResult(
                    phase.name, phase.mode, phase.required, outcome, len(phase.tests),
                    self._phase_times.get(phase.name, 0.0),
                )
            )  # fmt: skip
        return phases

    def _collect_queue_news(self) -> None:
        """What a queue shared by machines had to say: events, and a lost connection."""
        from testpool.distributed import RedisQueue

        queue = self.queue
        if not isinstance(queue, RedisQueue):
            return
        self.infra_events += queue.events
        if queue.error is not None and self.error is None:
            unrecorded = (
                f"; {len(queue.unrecorded)} result(s) of this machine not recorded in the build"
            )
            self.error = InfrastructureError(queue.error + (unrecorded if queue.unrecorded else ""))

    # --- the live view ---------------------------------------------------------------------

    def _board(self, workers: list[Worker]) -> Board:
        return Board(
            total=len(self.to_run),
            started=self._pass_started,
            workers=[WorkerView(w.index, w.port, w.state) for w in workers],
        )

    def _worker_changed(self, worker: Worker) -> None:
        self.reporter.worker_changed(
            WorkerView(worker.index, worker.port, worker.state, worker.current_test, worker.since)
        )

    def _notify(self) -> None:
        self._changed.set()

    # --- stopping --------------------------------------------------------------------------

    def _install_signal_handlers(self, main: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(name: str) -> None:
            if not self.interrupted and not self._cleaning:
                self.interrupted = True
                self.reporter.note(f"{name}: stopping the run (press Ctrl-C again to kill at once)")
                if self.queue is not None:
                    self.queue.stop()
                main.cancel()
            else:
                # A second signal, or one while we are already cleaning up: no more grace.
                self.interrupted = True
                procs.hurry()
                self.tracker.kill_all_now()
                if self.pool is not None:
                    self.pool.kill_now()
                if self.services is not None:
                    self.services.kill_now()

        for sig in _SIGNALS:
            self._previous_handlers[sig] = signal.getsignal(sig)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal, sig.name)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._previous_handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous)  # the CLI's handlers, for what follows the run

    async def _cleanup(self) -> None:
        """Stop everything this run started, in stages, whatever state it is in."""
        self._cleaning = True
        self.reporter.stop()
        if self._supervisor is not None:
            # From here on a service that ends is being stopped, not dying.
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self.queue is not None:
            await self.queue.close()
            self._collect_queue_news()
        # 1. Executors finish their work (session fixtures may still need the servers).
        await asyncio.gather(
            *(session.close() for session in self.sessions.values()), return_exceptions=True
        )
        # 2. Servers stop while long-lived executor processes wind down on their own.
        stopping = [self.executor.close()] if self.executor is not None else []
        if self.pool is not None:
            stopping.append(self.pool.shutdown())
        await asyncio.gather(*stopping)
        # 3. Whatever is still running gets the staged stop (without blocking the loop, so a
        # second Ctrl-C still acts at once).
        left = await procs.wait_groups_gone(self.tracker.groups, WIND_DOWN)
        await asyncio.gather(*(procs.terminate_group(pgid) for pgid in left))
        # 4. The shared services, last (servers and session fixtures may use them to the end),
        # in reverse dependency order.
        if self.services is not None:
            await self.services.stop()
        # Anything that escaped its process group still carries our run id.
        strays = procs.processes_of_run(self.run_id)
        if strays:
            await asyncio.to_thread(procs.kill_processes, strays)
        procs.reset_hurry()


def _not_discovered_here() -> Outcome:
    message = (
        "this machine did not discover this test: is its checkout, config or --file/-- "
        "selection the same as the machine that filled the queue?"
    )
    return Outcome(Status.FAILED, 0.0, "", message)


def _server_died(outcome: Outcome) -> Outcome:
    message = "the worker's server died during this test"
    return Outcome(Status.ERROR, outcome.duration, outcome.output, message)


def _service_died(outcome: Outcome, service: str) -> Outcome:
    message = f"service {service} died during this test"
    return Outcome(Status.ERROR, outcome.duration, outcome.output, message)


async def _all_or_nothing(awaitables: list[Awaitable[T]]) -> list[T]:
    """Await all; on the first failure cancel the rest, wait for them, and raise it."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
