"""Pure rendering: the live board, the per-test line and the final summary, as functions of state.

Nothing here reads a clock, a terminal or a file; the console reporters pass ``now`` and print
what comes back. That keeps every word a user sees testable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from testpool.fsutil import tail
from testpool.results import STATUS_ORDER, RunSummary, Status, TestResult
from testpool.sanitize import block, inline

STYLES = {
    Status.PASSED: "green",
    Status.FAILED: "bold red",
    Status.TIMEOUT: "bold red",
    Status.ERROR: "bold magenta",
    Status.FLAKY: "yellow",
    Status.SKIPPED: "cyan",
    Status.CACHED: "dim green",
    Status.NOT_RUN: "dim",
}
OUTPUT_TAIL_LINES = 30


@dataclass
class WorkerView:
    index: int
    port: int
    state: str
    test: str | None = None
    since: float = 0.0  # when the current test (or state) began, on the reporter's clock


@dataclass
class Board:
    """What the live view shows. Updated by the console reporter, rendered by :func:`render_board`."""

    total: int
    started: float
    done: int = 0
    failed: int = 0
    workers: list[WorkerView] = field(default_factory=list)
    remaining_estimate: float | None = None  # seconds of test time still to run, if known
    phase: str = ""  # "smoke (1/3, sequential)" while a configured phase runs


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def eta(board: Board) -> float | None:
    """Seconds until done: remaining test time spread over the busy-able workers."""
    if board.remaining_estimate is None:
        return None
    active = sum(1 for w in board.workers if w.state not in ("retired", "stopped")) or 1
    return board.remaining_estimate / active


def render_board(board: Board, now: float, width: int = 100) -> RenderableType:
    elapsed = now - board.started
    remaining = eta(board)
    header = Text()
    if board.phase:
        header.append(f" phase {inline(board.phase)} ", style="bold cyan")
    header.append(f" {board.done}/{board.total} ", style="bold")
    if board.failed:
        header.append(f"{board.failed} failed ", style="bold red")
    header.append(f"elapsed {fmt_seconds(elapsed)}")
    if remaining is not None:
        header.append(f"  eta {fmt_seconds(remaining)}")
    bar = Table.grid()  # a grid row ends its line; a bare ProgressBar does not
    bar.add_row(
        ProgressBar(total=max(board.total, 1), completed=board.done, width=max(10, width - 4))
    )
    table = Table.grid(padding=(0, 2))
    for column in ("worker", "port", "state", "for", "test"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for view in board.workers:
        running_for = fmt_seconds(now - view.since) if view.test else ""
        test = inline(view.test or "")
        # Text, never str: a cell given as a str would be parsed as rich markup.
        table.add_row(
            *map(Text, (f"w{view.index}", str(view.port), view.state, running_for)),
            Text(_shorten(test, width - 40)),
        )
    return Group(header, bar, table)


def _shorten(text: str, width: int) -> str:
    width = max(width, 20)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def result_line(result: TestResult) -> Text:
    """The one plain line per finished test (non-TTY output and the TTY's scrollback)."""
    line = Text()
    line.append(f"{result.status.value.upper():8}", style=STYLES[result.status])
    line.append(f" {inline(result.id)}")
    detail = []
    if result.worker is not None:
        detail.append(f"w{result.worker}")
    if result.status is not Status.CACHED:
        detail.append(f"{result.duration:.2f}s")
    if len(result.attempts) > 1:
        detail.append(f"{len(result.attempts)} attempts")
    if detail:
        line.append(f" [{' '.join(detail)}]", style="dim")
    if result.message and result.status is not Status.PASSED:
        line.append(f" {inline(result.message)}", style="dim")
    return line


def phase_label(name: str, number: int, count: int, mode: str, required: bool) -> str:
    """``smoke (1/3, sequential, required)``: a phase as the board and the log show it."""
    traits = [f"{number}/{count}", *(["sequential"] if mode == "sequential" else [])]
    if required:
        traits.append("required")
    return f"{name} ({', '.join(traits)})"


def phases_renderables(summary: RunSummary) -> list[RenderableType]:
    """One line per phase: its name, how it ran, and the counts of its tests."""
    if not summary.phases:
        return []
    out: list[RenderableType] = [Text("\nPhases", style="bold")]
    width = max(len(inline(phase.name)) for phase in summary.phases)
    for phase in summary.phases:
        counts = Counter(r.status for r in summary.results if r.phase == phase.name)
        line = Text(f"  {inline(phase.name).ljust(width)}  ")
        style = {"passed": "green", "failed": "bold red"}.get(phase.outcome, "dim")
        line.append(f"{phase.outcome:7}", style=style)
        traits = [phase.mode] + (["required"] if phase.required else [])
        line.append(f"  {', '.join(traits)}: ", style="dim")
        parts = [f"{counts[status]} {status.value}" for status in STATUS_ORDER if counts[status]]
        line.append(", ".join(parts) or "no tests")
        out.append(line)
    stopper = next((p for p in summary.phases if p.required and p.outcome == "failed"), None)
    if stopper is not None and any(p.outcome == "not run" for p in summary.phases):
        out.append(
            Text(
                f"  required phase {inline(stopper.name)} failed: the later phases did not run",
                style="bold red",
            )
        )
    return out


def counts_line(summary: RunSummary) -> Text:
    counts = summary.counts()
    text = Text()
    parts = [(status, counts[status]) for status in STATUS_ORDER if counts[status]]
    for position, (status, count) in enumerate(parts):
        if position:
            text.append(", ")
        text.append(f"{count} {status.value}", style=STYLES[status])
    if not parts:
        text.append("no tests")
    text.append(f" in {fmt_seconds(summary.wall_time)}")
    workers = "no worker started" if summary.workers == 0 else f"{summary.workers} worker(s)"
    text.append(f" ({workers})")
    return text


def summary_renderables(
    summary: RunSummary, *, verbose: bool, reports: Sequence[str] = ()
) -> list[RenderableType]:
    """The final summary: failures with their output, flaky tests, infra events, counts."""
    out: list[RenderableType] = []
    failures = [r for r in summary.results if r.status.is_failure]
    if failures:
        out.append(Text("\nFailures", style="bold red"))
    for result in failures:
        out.append(Text(""))
        out.append(result_line(result))
        lines = OUTPUT_TAIL_LINES
        shown = block(result.output)
        output = shown if verbose else tail(shown, lines)
        if output.strip():
            if not verbose and shown.count("\n") > lines:
                out.append(Text(f"  … last {lines} lines (-v for all):", style="dim"))
            out.append(Text("\n".join("  " + line for line in output.splitlines())))
        if result.log_path:
            out.append(Text(f"  test log:   {inline(result.log_path)}", style="dim"))
        worker_log = summary.worker_logs.get(result.worker) if result.worker is not None else None
        if worker_log:
            out.append(Text(f"  worker log: {inline(worker_log)}", style="dim"))
    flaky = [r for r in summary.results if r.status is Status.FLAKY]
    if flaky:
        label = "Flaky (failed, then passed)" + (
            " — counted as failures" if summary.fail_on_flaky else ""
        )
        out.append(Text(f"\n{label}", style="yellow"))
        out.extend(Text(f"  {inline(r.id)}") for r in flaky)
    out.extend(phases_renderables(summary))
    if summary.infra_events:
        out.append(Text("\nInfrastructure", style="magenta"))
        out.extend(Text(f"  {inline(event)}") for event in summary.infra_events)
    not_run = [r for r in summary.results if r.status is Status.NOT_RUN]
    if not_run:
        out.append(Text(f"\n{len(not_run)} test(s) not run", style="dim"))
    counts = summary.counts()
    out.append(Text(""))
    if summary.results and counts[Status.CACHED] == len(summary.results):
        line = Text(
            f"all {len(summary.results)} tests cached: nothing they depend on changed since they passed"
        )
        out.append(line)
    line = counts_line(summary)
    if summary.interrupted:
        line.append(" — interrupted", style="bold yellow")
    out.append(line)
    if reports:
        out.append(Text("reports: " + inline(", ".join(reports)), style="dim"))
    return out
