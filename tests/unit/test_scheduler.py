"""The scheduler is pure bookkeeping: tested with plain values, no processes."""

from __future__ import annotations

import pytest

from testpool.results import Status
from testpool.scheduler import Scheduler, order_tests


def drain(scheduler: Scheduler, worker: int, status: Status = Status.PASSED) -> list[str]:
    ran = []
    while (task := scheduler.next_for(worker)) is not None:
        ran.append(task.test_id)
        scheduler.finish(worker, status)
    return ran


def test_discovery_order_without_durations() -> None:
    scheduler = Scheduler(["a", "b", "c"], workers=[0])
    assert drain(scheduler, 0) == ["a", "b", "c"]
    assert scheduler.done


def test_longest_recorded_duration_first() -> None:
    scheduler = Scheduler(
        ["a", "b", "c", "d"], workers=[0], durations={"a": 1.0, "b": 5.0, "c": 3.0}
    )
    # d is unknown: it counts as the mean of the known (3.0) and keeps its place among equals.
    assert drain(scheduler, 0) == ["b", "c", "d", "a"]


def test_order_tests_is_stable_for_ties() -> None:
    assert order_tests(["x", "y", "z"], {"x": 2.0, "y": 2.0, "z": 2.0}) == ["x", "y", "z"]


def test_each_test_goes_to_exactly_one_worker() -> None:
    scheduler = Scheduler([f"t{i}" for i in range(10)], workers=[0, 1, 2])
    handed = []
    for _ in range(4):
        for worker in (0, 1, 2):
            task = scheduler.next_for(worker)
            if task:
                handed.append(task.test_id)
                scheduler.finish(worker, Status.PASSED)
    assert sorted(handed) == sorted(f"t{i}" for i in range(10))
    assert scheduler.done


def test_a_worker_cannot_take_two_tests_at_once() -> None:
    scheduler = Scheduler(["a", "b"], workers=[0])
    scheduler.next_for(0)
    with pytest.raises(RuntimeError):
        scheduler.next_for(0)


def test_failed_test_is_retried_on_another_worker_then_flaky() -> None:
    scheduler = Scheduler(["a", "b"], workers=[0, 1], retries=1)
    assert scheduler.next_for(0).test_id == "a"  # type: ignore[union-attr]
    decision = scheduler.finish(0, Status.FAILED)
    assert decision.requeued
    # Worker 0 is free first but should leave the retry to worker 1.
    assert scheduler.next_for(0).test_id == "b"  # type: ignore[union-attr]
    retry = scheduler.next_for(1)
    assert retry is not None and retry.test_id == "a" and retry.attempt == 2
    assert scheduler.finish(1, Status.PASSED).final is Status.FLAKY
    assert scheduler.finish(0, Status.PASSED).final is Status.PASSED
    assert scheduler.done


def test_retry_goes_to_the_same_worker_when_it_is_the_only_one() -> None:
    scheduler = Scheduler(["a"], workers=[0], retries=2)
    scheduler.next_for(0)
    scheduler.finish(0, Status.FAILED)
    task = scheduler.next_for(0)
    assert task is not None and task.attempt == 2
    assert scheduler.finish(0, Status.TIMEOUT).requeued
    scheduler.next_for(0)
    assert scheduler.finish(0, Status.FAILED).final is Status.FAILED


def test_no_retries_means_first_failure_is_final() -> None:
    scheduler = Scheduler(["a"], workers=[0])
    scheduler.next_for(0)
    assert scheduler.finish(0, Status.TIMEOUT).final is Status.TIMEOUT


def test_crashed_worker_hands_back_its_test_which_runs_once_more_elsewhere() -> None:
    scheduler = Scheduler(["a", "b"], workers=[0, 1])
    scheduler.next_for(0)  # a on worker 0
    assert scheduler.retire_worker(0) == "a"
    assert scheduler.finish(0, Status.ERROR).requeued
    assert scheduler.next_for(0) is None, "a retired worker gets nothing"
    assert [drain(scheduler, 1)] == [["a", "b"]]


def test_infrastructure_error_twice_is_final_and_does_not_use_retries() -> None:
    scheduler = Scheduler(["a"], workers=[0, 1], retries=3)
    scheduler.next_for(0)
    assert scheduler.finish(0, Status.ERROR).requeued
    scheduler.next_for(1)
    assert scheduler.finish(1, Status.ERROR).final is Status.ERROR


def test_error_then_pass_is_a_pass_not_flaky() -> None:
    scheduler = Scheduler(["a"], workers=[0, 1])
    scheduler.next_for(0)
    scheduler.finish(0, Status.ERROR)
    scheduler.next_for(1)
    assert scheduler.finish(1, Status.PASSED).final is Status.PASSED


def test_max_failures_stops_and_reports_the_rest_as_not_run() -> None:
    scheduler = Scheduler(["a", "b", "c", "d"], workers=[0, 1], max_failures=1)
    scheduler.next_for(0)
    scheduler.next_for(1)
    scheduler.finish(0, Status.FAILED)
    assert scheduler.stopped
    assert scheduler.not_run == ["c", "d"]
    assert scheduler.next_for(0) is None
    assert not scheduler.done, "b is still running"
    scheduler.finish(1, Status.PASSED)
    assert scheduler.done


def test_stop_returns_pending_and_blocks_retries() -> None:
    scheduler = Scheduler(["a", "b", "c"], workers=[0], retries=1)
    scheduler.next_for(0)
    assert scheduler.stop() == ["b", "c"]
    assert scheduler.finish(0, Status.FAILED).final is Status.FAILED


def test_skipped_is_final() -> None:
    scheduler = Scheduler(["a"], workers=[0], retries=1)
    scheduler.next_for(0)
    assert scheduler.finish(0, Status.SKIPPED).final is Status.SKIPPED


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError):
        Scheduler(["a", "a"], workers=[0])


def test_max_running_one_hands_out_one_test_at_a_time() -> None:
    scheduler = Scheduler(["a", "b", "c"], workers=[0, 1, 2], max_running=1)
    first = scheduler.next_for(0)
    assert first is not None and first.test_id == "a"
    assert scheduler.next_for(1) is None and scheduler.next_for(2) is None
    scheduler.finish(0, Status.PASSED)
    second = scheduler.next_for(2)
    assert second is not None and second.test_id == "b"
    assert scheduler.next_for(0) is None
    scheduler.finish(2, Status.PASSED)
    assert drain(scheduler, 1) == ["c"]
    assert scheduler.done


def test_an_infrastructure_error_is_retried_once_on_another_worker() -> None:
    scheduler = Scheduler(["a"], workers=[0, 1])
    assert scheduler.next_for(0).test_id == "a"  # type: ignore[union-attr]
    assert scheduler.finish(0, Status.ERROR).requeued
    assert scheduler.next_for(0) is None  # left to the other worker
    retry = scheduler.next_for(1)
    assert retry is not None and retry.attempt == 2
    assert scheduler.finish(1, Status.ERROR).final is Status.ERROR
