"""The command line: parse options, build the config, call one function, map it to an exit code.

Errors are turned into a one-line message and an exit code here and nowhere else.
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from testpool import __version__
from testpool.config import AUTO, MAX_WORKERS, Config, RunOptions, load_config, with_overrides
from testpool.errors import ConfigError, ExitCode, TestpoolError
from testpool.report.console import make_consoles, print_error

if TYPE_CHECKING:
    from testpool.distributed import QueueOptions
    from testpool.shard import Shard

EXIT_CODES = """\b
Exit codes:
  0    every test passed (cached counts as passed; flaky too, unless --fail-on-flaky)
  1    a test failed, timed out or hit an infrastructure error
  2    usage or configuration error (including secrets, a results_dir that
       cannot be written, -- ARGS the runner cannot use, a test requiring an
       unknown service, phases with --queue; init: no tests, or a configuration
       that exists already; explain: an ID that several test ids contain)
  3    infrastructure: tmux or a runner's toolchain missing, a worker or service
       port taken, a worker or shared service that did not start, a service that
       kept dying, every worker retired, Redis unreachable or lost (--queue), a
       build's results missing when `testpool report` gives up
  5    no tests found, or none matched --file or the -- ARGS selection (explain:
       no test id contains ID)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP)
"""


RUNNER_ARGS = "testpool.runner_args"


class _Group(click.Group):
    """A click group whose usage errors are one line: ``testpool: error: …`` (exit 2).

    Everything after a ``--`` goes to the runner (``testpool -- -k slow``): it is taken off
    before click parses, so no subcommand or option of ours ever sees it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ours, runner_args = split_runner_args(args, self._options_with_values())
        ctx.meta[RUNNER_ARGS] = tuple(runner_args)
        return super().parse_args(ctx, ours)

    def _options_with_values(self) -> set[str]:
        """Our option names that take a value: the value after one may be a literal ``--``."""
        names: set[str] = set()
        for command in (self, *self.commands.values()):
            for param in command.params:
                if isinstance(param, click.Option) and not param.is_flag and not param.count:
                    names.update(param.opts)
        return names

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as error:
            click.echo(f"testpool: error: {error.format_message()}", err=True)
            sys.exit(ExitCode.USAGE)
        except click.Abort:
            click.echo("testpool: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except click.ClickException as error:
            click.echo(f"testpool: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        sys.exit(code or 0)


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A positive, finite number of seconds (``nan`` and ``inf`` are floats, not durations)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise click.BadParameter(f"{value!r} is not a positive, finite number of seconds.")
    return seconds


def split_runner_args(args: list[str], with_values: set[str]) -> tuple[list[str], list[str]]:
    """``args`` before the first ``--`` that is not an option's value, and those after it."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return args[:index], args[index + 1 :]
        if arg in with_values:
            index += 1  # its value, whatever it looks like
        elif arg.startswith("-") and not arg.startswith("--"):
            # A cluster of short options (-xf PATTERN): a value-taking one ends it.
            for position, letter in enumerate(arg[1:], start=1):
                if f"-{letter}" in with_values:
                    if position == len(arg) - 1:
                        index += 1
                    break
        index += 1
    return args, []


class _Workers(click.types.StringParamType):
    """``--workers``: a count from 1 to MAX_WORKERS, or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or str(value).strip().lower() == AUTO:
            return value if isinstance(value, int) else AUTO
        try:
            count = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of workers (1-{MAX_WORKERS}) or 'auto'.")
        if not 1 <= count <= MAX_WORKERS:
            self.fail(f"{count} is not in the range 1<=x<={MAX_WORKERS}, nor 'auto'.")
        return count


class _Patterns(click.types.StringParamType):
    """``--file`` values; from ``TESTPOOL_FILE``, one pattern per line (a pattern may hold
    spaces)."""

    name = "pattern"
    envvar_list_splitter = "\n"


def _runner_args(ctx: click.Context) -> tuple[str, ...]:
    value = ctx.meta.get(RUNNER_ARGS, ())
    return tuple(value)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop testpool the way Ctrl-C does


def _guard(action: Callable[[], int]) -> int:
    """The single boundary where errors become a message and an exit code."""
    _, err = make_consoles()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for sig in previous:
            signal.signal(sig, _interrupt)
        return action()
    except TestpoolError as error:
        print_error(err, error.message, error.detail)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("testpool: interrupted")
        return ExitCode.INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _config(path: Path | None, **overrides: Any) -> Config:
    return with_overrides(load_config(path), **overrides)


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TESTPOOL_CONFIG",
    help="Config file (pyproject.toml or testpool.toml) [env: TESTPOOL_CONFIG; "
    "default: search from the current folder upward].",
)
_file_option = click.option(
    "-f",
    "--file",
    "patterns",
    metavar="PATTERN",
    multiple=True,
    type=_Patterns(),
    envvar="TESTPOOL_FILE",
    help="Only tests whose id (file path plus test name) contains PATTERN, ignoring case; "
    "repeat it for any of several [env: TESTPOOL_FILE, one per line].",
)
_full_option = click.option(
    "--full",
    is_flag=True,
    envvar="TESTPOOL_FULL",
    help="Run every test, ignoring the cache (results are still recorded) [env: TESTPOOL_FULL].",
)


@click.group(
    cls=_Group,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "-w",
    "--workers",
    type=_Workers(),
    metavar="N|auto",
    envvar="TESTPOOL_WORKERS",
    help=f"Number of dev-server workers, 1-{MAX_WORKERS}, or 'auto': the count predicted to "
    "finish first, from the cores, the CPU a server start took last time and the recorded "
    "test durations [env: TESTPOOL_WORKERS; config: workers; default: 1].",
)
@_file_option
@_full_option
@click.option(
    "--timeout",
    callback=_seconds,
    envvar="TESTPOOL_TIMEOUT",
    metavar="SECONDS",
    help="Seconds a worker may take to become healthy [env: TESTPOOL_TIMEOUT; config: startup_timeout; default: 60].",
)
@click.option(
    "--test-timeout",
    callback=_seconds,
    envvar="TESTPOOL_TEST_TIMEOUT",
    metavar="SECONDS",
    help="Seconds one test may run [env: TESTPOOL_TEST_TIMEOUT; config: test_timeout; default: 300].",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    envvar="TESTPOOL_RETRIES",
    metavar="N",
    help="Run a failed test up to N more times, on another worker when there is one; "
    "fail-then-pass is reported flaky [env: TESTPOOL_RETRIES; default: 0].",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=1),
    envvar="TESTPOOL_MAX_FAILURES",
    metavar="N",
    help="Stop starting tests after N failures; the rest are reported as not run "
    "[env: TESTPOOL_MAX_FAILURES].",
)
@click.option("-x", "--exitfirst", is_flag=True, help="Same as --max-failures 1.")
@click.option(
    "--fail-on-flaky",
    is_flag=True,
    envvar="TESTPOOL_FAIL_ON_FLAKY",
    help="Count flaky tests as failures (exit 1) [env: TESTPOOL_FAIL_ON_FLAKY].",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the full output of failed tests.")
@click.option(
    "--shard",
    metavar="I/N",
    envvar="TESTPOOL_SHARD",
    help="Run only part I of N of the suite, split by recorded durations (the same split on "
    "every machine given the same cache file); merge the parts' reports with "
    "`testpool merge-reports` [env: TESTPOOL_SHARD].",
)
@click.option(
    "--queue",
    "queue_url",
    metavar="URL",
    envvar="TESTPOOL_QUEUE",
    help="Take tests from a queue in Redis (redis://HOST:PORT/DB) shared by every machine "
    "running the same --build; see `testpool report` [env: TESTPOOL_QUEUE].",
)
@click.option(
    "--build",
    metavar="ID",
    envvar="TESTPOOL_BUILD",
    help="The build the machines share (with --queue), e.g. the CI run's id [env: TESTPOOL_BUILD].",
)
@click.option(
    "--resume",
    is_flag=True,
    envvar="TESTPOOL_RESUME",
    help="Join a --build that already exists with other tests, or has finished [env: TESTPOOL_RESUME].",
)
@click.option(
    "--lease-timeout",
    callback=_seconds,
    envvar="TESTPOOL_LEASE_TIMEOUT",
    metavar="SECONDS",
    help="With --queue: a test whose machine stops renewing its lease for this long goes to "
    "another machine [env: TESTPOOL_LEASE_TIMEOUT; default: 30].",
)
@click.option(
    "--watch",
    is_flag=True,
    help="After the run, keep the pool up, watch the project's files and rerun the tests each "
    "change affects (restarting the servers when their sources change), until Ctrl-C.",
)
@_config_option
@click.version_option(__version__, "--version", prog_name="testpool")
@click.pass_context
def cli(
    ctx: click.Context,
    workers: int | str | None,
    patterns: tuple[str, ...],
    full: bool,
    timeout: float | None,
    test_timeout: float | None,
    retries: int,
    max_failures: int | None,
    exitfirst: bool,
    fail_on_flaky: bool,
    verbose: bool,
    shard: str | None,
    queue_url: str | None,
    build: str | None,
    resume: bool,
    lease_timeout: float | None,
    watch: bool,
    config_path: Path | None,
) -> int:
    """Run the end-to-end suite in parallel against isolated dev-server workers.

    Each worker is a dev server in its own tmux session, on its own port (port_base + N),
    with its own seeded DATA_DIR. Tests that passed before and whose inputs have not changed
    are skipped (see `testpool list`). The shared services the tests to run require
    ([services.NAME] in the config) start once, before the workers; the tests run phase by
    phase ([[phases]]), and a failed required phase stops the run.

    \b
    testpool [OPTIONS] -- ARGS   choose tests the runner's way: ARGS go to pytest's
                                 collection (-k EXPR, -m MARKERS, node ids), to go's
                                 -run/-skip, or to a command runner's {args}
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path}
        return ExitCode.OK
    runner_args = _runner_args(ctx)

    def action() -> int:
        from testpool.app import run_suite

        options = RunOptions(
            full=full,
            patterns=patterns,
            runner_args=runner_args,
            verbose=verbose,
            retries=retries,
            max_failures=1 if exitfirst else max_failures,
            fail_on_flaky=fail_on_flaky,
            shard=_shard(shard),
            queue=_queue(queue_url, build, resume, lease_timeout, shard),
        )

        def load() -> Config:
            return _config(
                config_path, workers=workers, startup_timeout=timeout, test_timeout=test_timeout
            )

        config = load()
        out, err = make_consoles()
        if watch:
            from testpool.watch import watch_suite

            return watch_suite(config, options, out, err, reload_config=load)
        return run_suite(config, options, out, err)

    return _guard(action)


def _shard(text: str | None) -> Shard | None:
    from testpool.shard import parse_shard

    return parse_shard(text) if text else None


def _queue(
    url: str | None, build: str | None, resume: bool, lease: float | None, shard: str | None
) -> QueueOptions | None:
    if url is None and build is None:
        if resume or lease is not None:
            raise ConfigError("--resume and --lease-timeout only apply with --queue and --build")
        return None
    if url is None or build is None:
        raise ConfigError("--queue and --build go together (the Redis URL, and the build id)")
    if shard:
        raise ConfigError("--shard and --queue are two ways to split a suite: pick one")
    from testpool.distributed import QueueOptions

    return QueueOptions(url, build, resume=resume, lease=lease if lease is not None else 30.0)


def _inherited_config(ctx: click.Context, config_path: Path | None) -> Path | None:
    if config_path is not None:
        return config_path
    parent = ctx.parent.obj if ctx.parent is not None and ctx.parent.obj else {}
    value = parent.get("config_path")
    return value if isinstance(value, Path) else None


@cli.command("list")
@_file_option
@_full_option
@_config_option
@click.pass_context
def list_command(
    ctx: click.Context, patterns: tuple[str, ...], full: bool, config_path: Path | None
) -> int:
    """List the tests that would run, and whether the cache would skip each, and why.

    `testpool list [OPTIONS] -- ARGS` lists the runner's selection, as a run would.
    """
    options = RunOptions(full=full, patterns=patterns, runner_args=_runner_args(ctx))

    def action() -> int:
        from testpool.app import list_tests

        config = _config(_inherited_config(ctx, config_path))
        out, err = make_consoles()
        return list_tests(config, options, out, err)

    return _guard(action)


@cli.command("explain")
@click.argument("test", metavar="ID")
@_config_option
@click.pass_context
def explain_command(ctx: click.Context, test: str, config_path: Path | None) -> int:
    """Why test ID ran or was cached last time, and whether it would run now and why.

    ID is a test id, or a part of one that only one test id contains (ignoring case); several
    matches are listed (exit 2), none is exit 5. Shows the last run's verdict and its reason,
    what changed since the test last ran (the input, and the files or config keys within it),
    its last 10 results from the cache, and its flakiness (pass rate; flaky runs; failures
    followed by a pass in the next run).
    """
    if _runner_args(ctx):
        raise click.UsageError("explain takes no -- ARGS")

    def action() -> int:
        from testpool.app import explain_test

        config = _config(_inherited_config(ctx, config_path))
        out, err = make_consoles()
        return explain_test(config, test, out, err)

    return _guard(action)


@cli.command("init")
@click.pass_context
def init_command(ctx: click.Context) -> int:
    """Write a first configuration for the project in the current folder.

    Detects the tests folder and the runner (pytest, Go, or package.json's test tool through
    the command runner), the server command and its health path, and adds [tool.testpool] to
    pyproject.toml (the rest of the file is kept as it is) or writes testpool.toml where there
    is no pyproject.toml. Adds test-results/ and .test-cache.json to .gitignore. Never
    overwrites a configuration: an existing [tool.testpool] or testpool.toml is exit 2.
    """
    if _runner_args(ctx):
        raise click.UsageError("init takes no -- ARGS")

    def action() -> int:
        from testpool.app import init_project

        out, err = make_consoles()
        return init_project(Path.cwd(), out, err)

    return _guard(action)


@cli.command("clean")
@_config_option
@click.pass_context
def clean_command(ctx: click.Context, config_path: Path | None) -> int:
    """Stop and remove whatever earlier runs left behind.

    Finds runs whose testpool process is gone (killed, crashed) and stops their dev servers,
    test processes and tmux server, and removes their temp folders, after checking each process
    is still the one the run recorded. Listeners on the worker ports that testpool did not
    start are reported and left alone. Safe to run any time; live runs are not touched.
    """

    if _runner_args(ctx):
        raise click.UsageError("clean takes no -- ARGS")

    def action() -> int:
        from testpool.app import clean
        from testpool.errors import ConfigError

        path = _inherited_config(ctx, config_path)
        try:
            config = _config(path)
        except ConfigError:
            if path is not None:
                raise
            config = None  # clean works outside a project too
        out, err = make_consoles()
        return clean(config, out, err)

    return _guard(action)


def _optional_config(ctx: click.Context, config_path: Path | None) -> Config | None:
    """The project's config where there is one (commands that also work outside a project)."""
    path = _inherited_config(ctx, config_path)
    try:
        return _config(path)
    except ConfigError:
        if path is not None:
            raise
        return None


_output_option = click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for junit.xml, report.json and report.html [default: the project's results_dir, or "
    "./test-results outside a project].",
)


@cli.command("merge-reports")
@click.argument(
    "folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@_output_option
@click.option(
    "--cache-from",
    "caches",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also merge this cache file (a part's .test-cache.json) into the project's cache; "
    "may be given several times.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the full output of failed tests.")
@_config_option
@click.pass_context
def merge_reports_command(
    ctx: click.Context,
    folders: tuple[Path, ...],
    output: Path | None,
    caches: tuple[Path, ...],
    verbose: bool,
    config_path: Path | None,
) -> int:
    """Merge the reports of a suite's parts (--shard I/N): one junit.xml, report.json, report.html.

    Each FOLDER is a part's results_dir (its report.json, or aborted-run.json). A shard that
    is missing, given twice, or split from another suite makes the merged report fail (exit 1)
    with one line saying so. The exit code is the merged report's, as if one machine had run it.
    """

    def action() -> int:
        from testpool.app import merge_reports

        config = _optional_config(ctx, config_path)
        out, err = make_consoles()
        return merge_reports(list(folders), output, list(caches), config, out, err, verbose)

    return _guard(action)


@cli.command("report")
@click.option(
    "--queue", "queue_url", metavar="URL", envvar="TESTPOOL_QUEUE", required=True,
    help="The Redis URL the machines used [env: TESTPOOL_QUEUE].",
)  # fmt: skip
@click.option(
    "--build", metavar="ID", envvar="TESTPOOL_BUILD", required=True,
    help="The build to report [env: TESTPOOL_BUILD].",
)  # fmt: skip
@click.option(
    "--timeout",
    callback=_seconds,
    metavar="SECONDS",
    help="Give up waiting for results after this long; tests without one are reported "
    "not run and the exit code is 3 [default: 3600].",
)
@_output_option
@click.option("-v", "--verbose", is_flag=True, help="Show the full output of failed tests.")
@_config_option
@click.pass_context
def report_command(
    ctx: click.Context,
    queue_url: str,
    build: str,
    timeout: float | None,
    output: Path | None,
    verbose: bool,
    config_path: Path | None,
) -> int:
    """Wait until every test of a --queue build has a result; write its reports, exit with its code.

    Run it once, anywhere that reaches Redis (e.g. a last CI job), after the machines
    started. It also records the build's results in the project's cache, where there is one.
    """

    def action() -> int:
        from testpool.app import report_build
        from testpool.distributed import QueueOptions

        queue = QueueOptions(queue_url, build, machine="report")
        config = _optional_config(ctx, config_path)
        out, err = make_consoles()
        return report_build(queue, timeout or 3600.0, output, config, out, err, verbose)

    return _guard(action)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``testpool`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="testpool")
