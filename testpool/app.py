"""What each command does, as a pipeline of small steps (the CLI only parses and calls these).

``run_suite``: sweep dead runs → discover → filter → plan with the cache → run what is left
(or nothing) → write reports → summary → exit code. ``list_tests`` stops after the plan.
``clean`` is the sweep on its own plus a look at the worker ports.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text

from testpool.cache import CacheData, CacheStore, PlanItem, plan, shared_inputs
from testpool.config import MAX_WORKERS, RunOptions
from testpool.discovery import discover, select
from testpool.errors import CacheError, ConfigError, ExitCode
from testpool.fsutil import display_path
from testpool.hashing import FileHasher
from testpool.phases import phase_of, split
from testpool.report.console import print_error, say
from testpool.report.files import JUNIT, REPORT, RunLogs, write_reports
from testpool.report.render import summary_renderables
from testpool.requirements import resolve
from testpool.results import PhaseResult, RunSummary, cached_result
from testpool.runners import make_runner
from testpool.sanitize import inline
from testpool.state import RunScope

if TYPE_CHECKING:
    from rich.console import Console

    from testpool.config import Config
    from testpool.runners.base import Runner


@dataclass
class Prepared:
    runner: Runner
    store: CacheStore
    data: CacheData
    items: list[PlanItem]


def prepare(config: Config, options: RunOptions, err: Console, scope: RunScope) -> Prepared:
    """Discover, filter and decide per test whether the cache lets it be skipped.

    A discovery that has to start a process (pytest collecting) does so inside ``scope``."""
    runner = make_runner(config)
    store = CacheStore(config.cache_path)
    data, warning = store.load()
    if warning:
        say(err, f"testpool: warning: {warning}")
    warned = False

    def cache_warning(error: CacheError) -> None:
        nonlocal warned
        if not warned:  # one warning per run is enough
            say(err, f"testpool: warning: {error.message}")
        warned = True

    if config.secrets and not data.salt_from_file:
        # Settled in the file before the secrets digest is made with it (see settle_salt).
        try:
            data.salt = store.settle_salt(data.salt)
        except CacheError as error:
            cache_warning(error)
    hasher = FileHasher(config.root)
    cases, discovery_update = discover(runner, config, hasher, data, scope)
    selected = select(resolve(cases, config), options.pattern)
    shared = shared_inputs(config, runner, hasher, data.salt)
    items = plan(selected, data, runner, hasher, shared, full=options.full)
    if discovery_update:
        try:
            store.record({}, discovery_update, salt=data.salt)
        except CacheError as error:
            cache_warning(error)
    return Prepared(runner, store, data, items)


def sweep(err: Console) -> None:
    from testpool.state import sweep_dead_runs

    damaged: list[str] = []
    reports = sweep_dead_runs(damaged)
    for warning in damaged:
        say(err, f"testpool: warning: {warning}")
    for report in reports:
        if report.anything:
            say(err, f"testpool: cleaned up after a dead run: {report.describe()}")


def check_results_dir(config: Config) -> None:
    """Refuse to start a run whose reports could not be written (a read-only project)."""
    try:
        config.results_path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=config.results_path):
            pass
    except OSError as error:
        raise ConfigError(
            f"cannot write to results_dir {config.results_dir} ({error.strerror}): "
            "point results_dir at a writable folder"
        ) from None


def run_suite(config: Config, options: RunOptions, out: Console, err: Console) -> int:
    started = time.monotonic()
    sweep(err)
    check_results_dir(config)
    with RunScope(config.root) as scope:
        summary = _run_in(scope, config, options, out, err, started)
    shown = [
        display_path(path, config.root) for path in write_reports(summary, config.results_path)
    ]
    if summary.ran_nothing and (config.results_path / JUNIT).exists():
        shown[-1] += f" (no test started: {JUNIT} and {REPORT} are those of an earlier run)"
    for renderable in summary_renderables(summary, verbose=options.verbose, reports=shown):
        out.print(renderable)
    if summary.error:
        print_error(err, summary.error, summary.error_detail)
    return summary.exit_code()


def _run_in(
    scope: RunScope,
    config: Config,
    options: RunOptions,
    out: Console,
    err: Console,
    started: float,
) -> RunSummary:
    prepared = prepare(config, options, err, scope)
    to_run = [item for item in prepared.items if item.run]
    cached = [item for item in prepared.items if not item.run]
    order = [item.case.id for item in prepared.items]
    if not to_run:
        # Nothing to run: no worker and no service starts.
        return RunSummary(
            run_id=scope.run_id,
            results=[
                cached_result(i.case.id, i.case.file, phase_of(i.case, config)) for i in cached
            ],
            phases=[
                PhaseResult(p.name, p.mode, p.required, "passed", len(p.tests))
                for p in split([i.case for i in cached], config)
            ]
            if config.phases
            else [],
            wall_time=time.monotonic() - started,
            workers=0,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            started_unix=time.time(),
        )
    # Imported here: a fully cached run needs neither asyncio, httpx nor tmux.
    import asyncio

    from testpool.report.console import make_reporter
    from testpool.runner import Run

    logs = RunLogs(config.results_path, scope.run_id, config.keep_logs)
    logs.create()
    run = Run(
        config,
        options,
        prepared.runner,
        to_run=to_run,
        cached=cached,
        order=order,
        durations=prepared.data.durations(),
        store=prepared.store,
        salt=prepared.data.salt,
        reporter=make_reporter(out),
        scope=scope,
        logs=logs,
    )
    return asyncio.run(run.execute())


def list_tests(config: Config, options: RunOptions, out: Console, err: Console) -> int:
    with RunScope(config.root) as scope:
        prepared = prepare(config, options, err, scope)
    width = max((len(inline(item.case.id)) for item in prepared.items), default=0)
    for item in prepared.items:
        line = Text()
        line.append("run    " if item.run else "cached ", style="bold" if item.run else "green")
        line.append(inline(item.case.id).ljust(width))
        line.append(f"  {item.reason}", style="dim")
        out.print(line)
    would_run = sum(item.run for item in prepared.items)
    out.print(
        Text(
            f"{len(prepared.items)} test(s): {would_run} to run, {len(prepared.items) - would_run} cached",
            style="dim",
        )
    )
    return ExitCode.OK


def clean(config: Config | None, out: Console, err: Console) -> int:
    from testpool import procs
    from testpool.state import is_live, load_records, sweep_dead_runs

    damaged: list[str] = []
    reports = sweep_dead_runs(damaged)
    for report in reports:
        say(out, report.describe())
    for warning in damaged:
        say(err, f"testpool: warning: {warning}")
    live = [record for _, record in load_records() if is_live(record)]
    for record in live:
        say(
            out,
            f"run {record.run_id} is still running (pid {record.pid}, {record.root}): left alone",
        )
    base = config.port_base if config else 9000
    ours = {port for record in live for port in record.ports}
    for port, holder in sorted(procs.listeners(range(base, base + MAX_WORKERS)).items()):
        if port not in ours:
            say(out, f"port {port} is held by {holder}, not by testpool: left alone")
    if not reports:
        out.print("nothing to clean")
    return ExitCode.OK
