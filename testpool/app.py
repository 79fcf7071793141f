"""What each command does, as a pipeline of small steps (the CLI only parses and calls these).

``run_suite``: sweep dead runs → discover → filter → plan with the cache → run what is left
(or nothing) → write reports → summary → exit code. ``list_tests`` stops after the plan.
``clean`` is the sweep on its own plus a look at the worker ports.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from testpool.cache import (
    CacheData,
    CacheStore,
    PlanItem,
    SharedInputs,
    manifests_for,
    plan,
    shared_inputs,
)
from testpool.config import AUTO, MAX_WORKERS, RunOptions
from testpool.discovery import discover, select
from testpool.errors import CacheError, ConfigError, ExitCode
from testpool.fsutil import display_path
from testpool.hashing import FileHasher
from testpool.phases import phase_of, split
from testpool.report.console import print_error, say
from testpool.report.files import JUNIT, REPORT, RunLogs, write_reports
from testpool.report.html import HTML
from testpool.report.render import summary_renderables
from testpool.requirements import resolve
from testpool.results import PhaseResult, RunSummary, cached_result
from testpool.runners import make_runner
from testpool.sanitize import block, inline
from testpool.startup import Timeline, process_age
from testpool.state import RunScope

if TYPE_CHECKING:
    from rich.console import Console

    from testpool.autoworkers import Choice
    from testpool.config import Config
    from testpool.distributed import QueueOptions
    from testpool.queues import WorkQueue
    from testpool.runners.base import Runner
    from testpool.shard import Shard


@dataclass
class Prepared:
    runner: Runner
    store: CacheStore
    data: CacheData
    items: list[PlanItem]
    hasher: FileHasher
    shared: SharedInputs
    timeline: Timeline


def prepare(
    config: Config,
    options: RunOptions,
    err: Console,
    scope: RunScope,
    timeline: Timeline | None = None,
) -> Prepared:
    """Discover, filter and decide per test whether the cache lets it be skipped.

    A discovery that has to start a process (pytest collecting) does so inside ``scope``."""
    timeline = timeline or Timeline()
    runner = make_runner(config, options.runner_args)
    for note in runner.notes():
        say(err, f"testpool: warning: {note}")
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
    with timeline.span("discovery"):
        cases, discovery_update, from_cache = discover(runner, config, hasher, data, scope)
    timeline.facts["discovery"] = "cached" if from_cache else "collected"
    for file, reason in runner.skipped_files:  # pytest says "1 skipped" for such a module
        say(err, f"testpool: {file}: no tests: it skipped itself while collected ({reason})")
    with timeline.span("plan"):
        selected = select(resolve(cases, config), options.patterns)
        shared = shared_inputs(config, runner, hasher, data.salt)
        items = plan(selected, data, runner, hasher, shared, full=options.full)
    if discovery_update:
        try:
            store.record({}, discovery_update, salt=data.salt)
        except CacheError as error:
            cache_warning(error)
    return Prepared(runner, store, data, items, hasher, shared, timeline)


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
    timeline = Timeline(age=process_age())
    if options.queue is not None and config.phases:
        # A shared queue hands out the whole build at once; phase order across machines (and a
        # required phase stopping them all) is not built yet.
        raise ConfigError("phases are not supported with --queue yet; use --shard or drop --queue")
    sweep(err)
    check_results_dir(config)
    with RunScope(config.root) as scope:
        summary, reasons = _run_in(scope, config, options, out, err, started, timeline)
    # Why each test ran, or "unchanged" (report.json; `testpool explain` reads it)
    summary.results = [replace(r, reason=reasons.get(r.id, r.reason)) for r in summary.results]
    shown = [
        display_path(path, config.root) for path in write_reports(summary, config.results_path)
    ]
    if summary.ran_nothing and (config.results_path / JUNIT).exists():
        shown[-1] += f" (no test started: {JUNIT}, {REPORT} and {HTML} are those of an earlier run)"
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
    timeline: Timeline,
) -> tuple[RunSummary, dict[str, str]]:
    """The run's summary, and why the plan ran or skipped each test."""
    prepared = prepare(config, options, err, scope, timeline)
    reasons = {item.case.id: item.reason for item in prepared.items}
    if options.queue is not None:
        return _run_on_queue(scope, config, options, prepared, out, started), reasons
    items, part = prepared.items, None
    if options.shard is not None:
        items, part = _my_shard(options.shard, prepared)
    to_run = [item for item in items if item.run]
    cached = [item for item in items if not item.run]
    if not to_run:
        # Nothing to run: no worker and no service starts.
        summary = RunSummary(
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
            part=part,
            startup=timeline.to_dict(),
        )
        return summary, reasons
    summary = _run(scope, config, options, prepared, out, to_run=to_run, cached=cached)
    summary.part = part
    return summary, reasons


def _run(
    scope: RunScope,
    config: Config,
    options: RunOptions,
    prepared: Prepared,
    out: Console,
    *,
    to_run: list[PlanItem],
    cached: list[PlanItem],
    queue: WorkQueue | None = None,
) -> RunSummary:
    # Imported here: a fully cached run needs neither asyncio, httpx nor tmux.
    import asyncio

    from testpool.report.console import make_reporter
    from testpool.runner import Run

    # A queue machine gets the whole build (its cached tests too). It plans for the build's
    # tests to run as if it ran them alone: how many machines share it is not known.
    choice = choose_workers(
        config, prepared, to_run, plan_for=[i for i in to_run if i.run] if queue else None
    )
    if choice.auto:
        say(out, f"testpool: workers: {choice.reason}")
    config = replace(config, workers=choice.workers)
    logs = RunLogs(config.results_path, scope.run_id, config.keep_logs)
    logs.create()
    # What the digests of the tests to run are made of, recorded with their results so that
    # `testpool explain` can name the files that change later.
    prepared.store.manifests.update(
        manifests_for(to_run, prepared.runner, prepared.hasher, prepared.shared)
    )
    run = Run(
        config,
        options,
        prepared.runner,
        to_run=to_run,
        cached=cached,
        order=[item.case.id for item in prepared.items],
        durations=prepared.data.durations(),
        store=prepared.store,
        salt=prepared.data.salt,
        reporter=make_reporter(out),
        scope=scope,
        logs=logs,
        queue=queue,
        timeline=prepared.timeline,
        workers_choice=choice.to_dict(),
    )
    return asyncio.run(run.execute())


def choose_workers(
    config: Config,
    prepared: Prepared,
    to_run: list[PlanItem],
    *,
    plan_for: list[PlanItem] | None = None,
) -> Choice:
    """The configured worker count (at most one per test of ``to_run``), or for ``workers =
    "auto"`` the one predicted to finish ``plan_for`` (default: ``to_run``) first (see
    :mod:`testpool.autoworkers`). Called by a run, and by ``--watch`` for the whole suite (any
    change may rerun any test)."""
    from testpool.autoworkers import Choice, ServerCost, available_cores, choose, server_key

    if config.workers != AUTO:
        count = min(config.worker_count, len(to_run))
        return Choice(count, f"{config.worker_count} worker(s) configured")
    to_run = to_run if plan_for is None else plan_for
    recorded = prepared.data.stats.get(server_key(config))
    tests = prepared.data.tests
    return choose(
        cores=available_cores(),
        durations=[
            tests[item.case.id].duration if item.case.id in tests else None for item in to_run
        ],
        server=ServerCost.from_dict(recorded) if recorded is not None else None,
        max_workers=MAX_WORKERS,
    )


def _my_shard(shard: Shard, prepared: Prepared) -> tuple[list[PlanItem], dict[str, Any]]:
    """This machine's part of the suite (the same split on every machine: see testpool.shard)."""
    from testpool.shard import assign

    items = prepared.items
    parts = assign(
        [item.case.id for item in items],
        shard.count,
        prepared.data.durations(),
        skipped={item.case.id for item in items if not item.run},
    )
    mine = set(parts[shard.index - 1])
    part = {"kind": "shard", "index": shard.index, "count": shard.count, "suite": len(items)}
    return [item for item in items if item.case.id in mine], part


def _run_on_queue(
    scope: RunScope,
    config: Config,
    options: RunOptions,
    prepared: Prepared,
    out: Console,
    started: float,
) -> RunSummary:
    """Take tests from the build's queue in Redis (filling it first if this machine is the
    first), then let every result of the build flow into this machine's cache."""
    from testpool.distributed import RedisQueue, TestEntry, connect, fill_or_join

    queue_options = options.queue
    assert queue_options is not None
    client = connect(queue_options)
    try:
        joined = fill_or_join(
            client,
            queue_options,
            [TestEntry(i.case.id, i.case.file, i.run) for i in prepared.items],
            prepared.data.durations(),
            retries=options.retries,
            max_failures=options.max_failures,
        )
        how = "filled the queue of" if joined.filled else "joined"
        say(
            out,
            f"testpool: {how} build {queue_options.build} at {queue_options.where} as "
            f"{queue_options.machine} ({joined.total} tests, {joined.finished} with a result)",
        )
        part = {"kind": "queue", "build": queue_options.build, "machine": queue_options.machine}
        if joined.finished >= joined.total:
            summary = RunSummary(
                run_id=scope.run_id,
                results=[],
                wall_time=time.monotonic() - started,
                workers=0,
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                started_unix=time.time(),
            )
        else:
            queue = RedisQueue(
                queue_options,
                inputs={item.case.id: item.inputs for item in prepared.items},
                files={item.case.id: item.case.file for item in prepared.items},
            )
            summary = _run(
                scope, config, options, prepared, out,
                to_run=list(prepared.items), cached=[], queue=queue,
            )  # fmt: skip
        summary.part = part
        _learn_from_build(prepared.store, client, queue_options)
        return summary
    finally:
        client.close()


def _learn_from_build(store: CacheStore, client: Any, queue_options: QueueOptions) -> None:
    """Record in this machine's cache the results other machines of the build got (each with
    the input digests it ran against, so a test is only skipped here if this checkout has the
    same inputs)."""
    from testpool.cache import CacheEntry
    from testpool.distributed import cache_entries, read_build

    try:
        state = read_build(client, queue_options.build)
    except Exception:  # Redis gone: the run has reported that already
        return
    if state is None:
        return
    entries = {}
    for test_id, raw in cache_entries(state, skip_origin=queue_options.machine).items():
        try:
            entries[test_id] = CacheEntry.from_dict({**raw, "secret_names": []})
        except (KeyError, ValueError, TypeError):
            continue
    if entries:
        try:
            store.record(entries, salt=store.load()[0].salt)
        except CacheError:
            pass


def merge_reports(
    folders: list[Path],
    output: Path | None,
    caches: list[Path],
    config: Config | None,
    out: Console,
    err: Console,
    verbose: bool = False,
) -> int:
    """``testpool merge-reports``: one report from the parts' reports (and caches)."""
    from testpool.report.merge import load_part, merge

    summary = merge([load_part(folder) for folder in folders])
    if caches:
        if config is None:
            raise ConfigError("--cache-from needs a project (a testpool config) to merge into")
        merged = _merge_caches(CacheStore(config.cache_path), caches)
        say(err, f"testpool: merged {merged} cache entr{'y' if merged == 1 else 'ies'}")
    return _report(summary, _output_folder(output, config), config, out, err, verbose)


def report_build(
    queue: QueueOptions,
    timeout: float,
    output: Path | None,
    config: Config | None,
    out: Console,
    err: Console,
    verbose: bool = False,
) -> int:
    """``testpool report``: the reports and exit code of a whole --queue build."""
    from testpool.distributed import build_summary, connect, wait_for_build

    client = connect(queue)
    try:
        started = time.monotonic()
        state = wait_for_build(client, queue, timeout)
        summary = build_summary(state, queue.build, waited=time.monotonic() - started)
        if config is not None:
            _learn_from_build(CacheStore(config.cache_path), client, queue)
    finally:
        client.close()
    return _report(summary, _output_folder(output, config), config, out, err, verbose)


def _output_folder(output: Path | None, config: Config | None) -> Path:
    if output is not None:
        return output
    return config.results_path if config is not None else Path("test-results").resolve()


def _report(
    summary: RunSummary,
    folder: Path,
    config: Config | None,
    out: Console,
    err: Console,
    verbose: bool,
) -> int:
    root = config.root if config is not None else Path.cwd()
    try:
        written = write_reports(summary, folder)
    except OSError as error:
        raise ConfigError(f"cannot write the reports to {folder}: {error.strerror}") from None
    shown = [display_path(path, root) for path in written]
    for renderable in summary_renderables(summary, verbose=verbose, reports=shown):
        out.print(renderable)
    if summary.error:
        print_error(err, summary.error, summary.error_detail)
    return summary.exit_code()


def _merge_caches(store: CacheStore, caches: list[Path]) -> int:
    from testpool.cache import CacheEntry, parse

    entries: dict[str, CacheEntry] = {}
    manifests: dict[str, dict[str, str]] = {}
    for path in caches:
        try:
            data, warning = parse(path.read_bytes(), path.name)
        except OSError as error:
            raise ConfigError(f"--cache-from {path}: {error.strerror}") from None
        if warning:
            raise ConfigError(f"--cache-from {path}: {warning}")
        for test_id, entry in data.tests.items():
            if test_id not in entries:
                entries[test_id] = entry
            elif entries[test_id].ran_at < entry.ran_at:
                entries[test_id] = entries[test_id].followed_by(entry)
            else:
                entries[test_id] = entry.followed_by(entries[test_id])
        manifests.update(data.manifests)
    try:
        store.record(entries, salt=store.load()[0].salt, manifests=manifests)
    except CacheError as error:
        raise ConfigError(error.message) from None
    return len(entries)


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


def explain_test(config: Config, query: str, out: Console, err: Console) -> int:
    """``testpool explain ID``: why the test ran or was cached last time, whether it would run
    now and why (down to the files), its recent results and its flakiness."""
    import json

    from testpool.cache import case_manifests, shared_manifests
    from testpool.explain import LastReport, Subject, explain, match

    with RunScope(config.root) as scope:
        prepared = prepare(config, RunOptions(), err, scope)
    items = {item.case.id: item for item in prepared.items}
    test_id = match(query, list(dict.fromkeys([*items, *prepared.data.tests])))
    item = items.get(test_id)
    manifests: dict[str, dict[str, str]] = {}
    if item is not None:
        manifests = shared_manifests(prepared.shared, prepared.hasher)
        manifests |= case_manifests(item.case, prepared.runner, prepared.hasher, prepared.shared)
    report_path = config.results_path / REPORT
    try:
        report = json.loads(report_path.read_bytes())
    except (OSError, ValueError):
        report = None
    subject = Subject(
        test_id=test_id,
        entry=prepared.data.tests.get(test_id),
        inputs=item.inputs if item is not None else None,
        manifests=manifests,
        cache_manifests=prepared.data.manifests,
        last_report=LastReport.find(report, test_id) if isinstance(report, dict) else None,
        report_path=display_path(report_path, config.root),
    )
    for line in explain(subject):
        say(out, line)
    return ExitCode.OK


def init_project(root: Path, out: Console, err: Console) -> int:
    """``testpool init``: detect, write the configuration, add the .gitignore lines."""
    from rich.text import Text as RichText

    from testpool.scaffold import detect, update_gitignore, write_config

    detected = detect(root)
    written = write_config(root, detected)
    header = "[tool.testpool]\n" if written.name == "pyproject.toml" else ""
    say(out, f"testpool init: wrote this to {written.name}:")
    out.print(RichText(block(header + detected.table()).rstrip("\n")), style="bold")
    out.print(RichText("how it was found:", style="dim"))
    for note in detected.notes:
        say(out, f"  {note}", style="dim")
    added = update_gitignore(root)
    if added:
        say(out, f"added to .gitignore: {', '.join(added)}")
    if detected.server is None:
        say(err, f"testpool init: warning: no server command found: set `server` in {written.name}")
    say(out, "next: `testpool list` shows the tests and what would run; `testpool` runs them")
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
