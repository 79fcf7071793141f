"""The command line: parse options, build the config, call one function, map it to an exit code.

Errors are turned into a one-line message and an exit code here and nowhere else.
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from testpool import __version__
from testpool.config import MAX_WORKERS, Config, RunOptions, load_config, with_overrides
from testpool.errors import ExitCode, TestpoolError
from testpool.report.console import make_consoles, print_error

EXIT_CODES = """\b
Exit codes:
  0    every test passed (cached counts as passed; flaky too, unless --fail-on-flaky)
  1    a test failed, timed out or hit an infrastructure error
  2    usage or configuration error (including secrets, a results_dir that
       cannot be written, and a test requiring an unknown service)
  3    infrastructure: tmux or a runner's toolchain missing, a worker or service
       port taken, a worker or shared service that did not start, a service
       that kept dying, every worker retired
  5    no tests found, or none matched --file
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP)
"""


class _Group(click.Group):
    """A click group whose usage errors are one line: ``testpool: error: …`` (exit 2)."""

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
    "pattern",
    metavar="PATTERN",
    envvar="TESTPOOL_FILE",
    help="Only tests whose id (file path plus test name) contains PATTERN, ignoring case "
    "[env: TESTPOOL_FILE].",
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
    type=click.IntRange(1, MAX_WORKERS),
    envvar="TESTPOOL_WORKERS",
    help=f"Number of dev-server workers, 1-{MAX_WORKERS} [env: TESTPOOL_WORKERS; config: workers; default: 1].",
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
@_config_option
@click.version_option(__version__, "--version", prog_name="testpool")
@click.pass_context
def cli(
    ctx: click.Context,
    workers: int | None,
    pattern: str | None,
    full: bool,
    timeout: float | None,
    test_timeout: float | None,
    retries: int,
    max_failures: int | None,
    exitfirst: bool,
    fail_on_flaky: bool,
    verbose: bool,
    config_path: Path | None,
) -> int:
    """Run the end-to-end suite in parallel against isolated dev-server workers.

    Each worker is a dev server in its own tmux session, on its own port (port_base + N),
    with its own seeded DATA_DIR. Tests that passed before and whose inputs have not changed
    are skipped (see `testpool list`). The shared services the tests to run require
    ([services.NAME] in the config) start once, before the workers; the tests run phase by
    phase ([[phases]]), and a failed required phase stops the run.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path}
        return ExitCode.OK
    options = RunOptions(
        full=full,
        pattern=pattern,
        verbose=verbose,
        retries=retries,
        max_failures=1 if exitfirst else max_failures,
        fail_on_flaky=fail_on_flaky,
    )

    def action() -> int:
        from testpool.app import run_suite

        config = _config(
            config_path, workers=workers, startup_timeout=timeout, test_timeout=test_timeout
        )
        out, err = make_consoles()
        return run_suite(config, options, out, err)

    return _guard(action)


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
    ctx: click.Context, pattern: str | None, full: bool, config_path: Path | None
) -> int:
    """List the tests that would run, and whether the cache would skip each, and why."""

    def action() -> int:
        from testpool.app import list_tests

        config = _config(_inherited_config(ctx, config_path))
        out, err = make_consoles()
        return list_tests(config, RunOptions(full=full, pattern=pattern), out, err)

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


def main(argv: Sequence[str] | None = None) -> None:
    """The ``testpool`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="testpool")
