"""Console reporters: a live board on a terminal, one plain line per test elsewhere (CI logs).

All output goes through the two consoles made by :func:`make_consoles` (stdout for results,
stderr for warnings and errors). rich honours ``NO_COLOR`` and never writes escape codes when
the output is not a terminal. Which reporter to use is decided once, by :func:`make_reporter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from testpool.fsutil import indent
from testpool.report.render import (
    Board,
    WorkerView,
    render_board,
    result_line,
)
from testpool.results import Status, TestResult
from testpool.sanitize import block, inline


def make_consoles() -> tuple[Console, Console]:
    """stdout and stderr. Markup and emoji codes are off: every string printed is plain text
    (a test id such as ``test_p[/health]`` or ``test_x[red]`` is shown as it is)."""
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    return out, err


def say(console: Console, text: str, style: str = "") -> None:
    """Print one line that may hold text from elsewhere (ids, paths, messages), as plain text."""
    console.print(Text(inline(text), style=style))


def print_error(console: Console, message: str, detail: str = "") -> None:
    """``testpool: error: …`` and, indented under it, the lines that explain it (a server's
    log tail, a tool's output) without their escape sequences."""
    say(console, f"testpool: error: {message}")
    if detail.strip():
        console.print(Text(indent(block(detail))))


class Reporter(Protocol):
    """What the runner tells the user about, as it happens. Called only by the runner; the
    final summary is rendered by the caller from the run's result."""

    def start(self, board: Board) -> None: ...
    def phase_started(self, label: str, tests: int) -> None: ...
    def worker_changed(self, view: WorkerView) -> None: ...
    def test_finished(self, result: TestResult, remaining_estimate: float | None) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class PlainReporter:
    """One line per finished test; no cursor movement, no colour unless the console allows it."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.board: Board | None = None

    def start(self, board: Board) -> None:
        self.board = board
        workers = len(board.workers)
        self.console.print(f"testpool: running {board.total} test(s) on {workers} worker(s)")

    def phase_started(self, label: str, tests: int) -> None:
        """A configured phase begins (``label`` from :func:`~testpool.report.render.phase_label`)."""
        if self.board is not None:
            self.board.phase = label
        self.console.print(Text(inline(f"testpool: phase {label}: {tests} test(s)"), style="bold"))

    def worker_changed(self, view: WorkerView) -> None:
        if self.board is None:
            return
        for index, existing in enumerate(self.board.workers):
            if existing.index == view.index:
                self.board.workers[index] = view

    def test_finished(self, result: TestResult, remaining_estimate: float | None) -> None:
        if self.board is not None:
            self.board.done += 1
            self.board.failed += int(result.status.is_failure)
            self.board.remaining_estimate = remaining_estimate
        self.show_result(result)

    def show_result(self, result: TestResult) -> None:
        self.console.print(result_line(result))

    def note(self, text: str) -> None:
        self.console.print(Text(inline(text), style="magenta"))

    def stop(self) -> None:
        return None


class LiveReporter(PlainReporter):
    """The plain reporter plus a board redrawn in place: progress, ETA, one line per worker.

    Only results worth reading (failures, flaky, skipped) scroll above the board.
    """

    REFRESH_PER_SECOND = 8

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(console, clock)
        self._live: Live | None = None

    def start(self, board: Board) -> None:
        super().start(board)
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=self.REFRESH_PER_SECOND,
            transient=True,
        )
        self._live.start()

    def _render(self) -> RenderableType:
        assert self.board is not None
        return render_board(self.board, self.clock(), self.console.width)

    def show_result(self, result: TestResult) -> None:
        if result.status not in (Status.PASSED, Status.CACHED):
            super().show_result(result)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def make_reporter(console: Console) -> PlainReporter:
    return LiveReporter(console) if console.is_terminal else PlainReporter(console)
