"""A worker executor that runs each test as its own process (the go and command runners)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from testpool.execution import CannotStart, ProcessResult, decode, run_process
from testpool.results import Outcome, Status
from testpool.runners.base import ExecContext, TestCase, WorkerContext

# (argv, working folder) for a test
Build = Callable[[TestCase], tuple[Sequence[str], Path]]
# status and one-line message from the finished process and its decoded output
Interpret = Callable[[TestCase, ProcessResult, str], tuple[Status, str]]


class ProcessPerTest:
    def __init__(
        self, context: ExecContext, worker: WorkerContext, build: Build, interpret: Interpret
    ) -> None:
        self.context = context
        self.worker = worker
        self._build = build
        self._interpret = interpret

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, case: TestCase, timeout: float) -> Outcome:
        argv, cwd = self._build(case)
        try:
            result = await run_process(
                argv, cwd=cwd, env=self.worker.env, timeout=timeout, tracker=self.context.tracker
            )
        except CannotStart as error:
            return Outcome(Status.FAILED, 0.0, "", str(error))
        output = decode(result.output)
        if result.timed_out:
            return Outcome(
                Status.TIMEOUT, result.duration, output, f"timed out after {timeout:g} s"
            )
        status, message = self._interpret(case, result, output)
        return Outcome(status, result.duration, output, message)
