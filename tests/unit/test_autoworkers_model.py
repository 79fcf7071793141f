"""workers = "auto": the model and the choice, with made-up measurements (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testpool.autoworkers import (
    ServerCost,
    available_cores,
    choose,
    makespan,
    server_key,
    startup,
)
from testpool.config import parse_config


def test_the_issue_measurement_is_reproduced() -> None:
    """Issue 15: on 2 cores, servers needing ~1 s of CPU each made 1 worker (4.1 s) faster
    than 4 (6.3 s) and 8 (12.9 s). The suite's ~1 s of tests is what the gap between 1 and 4
    workers implies (6.3 - 4.1 = 3 s more start-up - 3/4 of the tests)."""
    choice = choose(
        cores=2, durations=[1.07 / 8] * 8, server=ServerCost(cpu=1.0, wall=1.0, workers=1)
    )
    assert choice.workers == 1
    predicted = choice.predicted
    assert predicted[1] < predicted[2] < predicted[4] < predicted[8]
    # The same gaps as the measurement, give or take (the model does not know testpool's own
    # fixed start-up, which is the same for any N): 4 - 1 workers = 2.2 s measured.
    assert predicted[4] - predicted[1] == pytest.approx(6.3 - 4.1, abs=0.1)
    assert predicted[8] - predicted[1] > 5  # 8.8 s measured: the model errs on the kind side
    assert "1 worker(s)" in choice.reason and "1.00 s of CPU per server start" in choice.reason


def test_a_cheap_server_and_long_tests_get_many_workers() -> None:
    choice = choose(
        cores=2, durations=[0.25] * 64, server=ServerCost(cpu=0.05, wall=0.1, workers=4)
    )
    assert choice.workers == 8
    assert choice.predicted[8] < choice.predicted[4] < choice.predicted[1]


def test_a_costly_server_gets_fewer_workers_than_a_cheap_one() -> None:
    durations = [0.3] * 20
    cheap = choose(cores=2, durations=durations, server=ServerCost(0.05, 0.1, 2))
    costly = choose(cores=2, durations=durations, server=ServerCost(1.0, 1.2, 2))
    assert costly.workers < cheap.workers


def test_more_cores_afford_more_costly_servers() -> None:
    durations = [0.5] * 32
    server = ServerCost(cpu=1.0, wall=1.0, workers=1)
    assert (
        choose(cores=8, durations=durations, server=server).workers
        > choose(cores=2, durations=durations, server=server).workers
    )


def test_the_longest_test_cannot_be_beaten() -> None:
    """One 10 s test and a few short ones: more workers than it takes to run the short ones
    beside the long one only cost start-up."""
    choice = choose(cores=8, durations=[10.0, 1.0, 1.0], server=ServerCost(0.2, 0.3, 1))
    assert choice.workers == 2
    assert choice.predicted[2] == pytest.approx(choice.predicted[3], abs=0.01)


def test_never_more_workers_than_tests() -> None:
    choice = choose(cores=8, durations=[3.0, 3.0], server=ServerCost(0.01, 0.05, 1))
    assert choice.workers == 2
    assert set(choice.predicted) == {1, 2}


def test_tests_without_a_recorded_duration_count_as_the_typical_one() -> None:
    known = choose(cores=2, durations=[1.0] * 8, server=ServerCost(0.1, 0.2, 1))
    half = choose(cores=2, durations=[1.0] * 4 + [None] * 4, server=ServerCost(0.1, 0.2, 1))
    assert half.predicted == known.predicted
    assert "4 without a recorded duration" in half.reason


@pytest.mark.parametrize(
    ("server", "durations", "missing"),
    [
        (None, [1.0] * 10, "no server start measured yet"),
        (ServerCost(0.1, 0.2, 1), [None] * 10, "no recorded test durations"),
    ],
)
def test_nothing_to_predict_with_is_min_of_cores_tests_and_4(
    server: ServerCost | None, durations: list[float | None], missing: str
) -> None:
    assert choose(cores=8, durations=durations, server=server).workers == 4
    assert choose(cores=2, durations=durations, server=server).workers == 2
    assert choose(cores=8, durations=durations[:3], server=server).workers == 3
    choice = choose(cores=8, durations=durations, server=server)
    assert missing in choice.reason and "min(cores 8, tests 10, 4)" in choice.reason
    assert choice.auto and choice.predicted == {}


def test_a_tie_goes_to_fewer_workers() -> None:
    # 2 workers (2 | 1 + 1) and 3 (2 | 1 | 1) both take 2 s: the third would idle.
    choice = choose(cores=8, durations=[2.0, 1.0, 1.0], server=ServerCost(0.0, 0.0, 1))
    assert choice.predicted[2] == choice.predicted[3]
    assert choice.workers == 2


def test_makespan_hands_out_longest_first() -> None:
    assert makespan([5.0, 1.0, 1.0, 1.0], 4) == 5.0
    assert makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0  # 3+2+2 | 3+2
    assert makespan([1.0] * 6, 1) == 6.0


def test_startup_is_the_cpu_floor_of_the_spare_cores_plus_the_waiting() -> None:
    assert startup(1, cpu=1.0, io=0.5, cores=2) == 1.5
    assert startup(4, cpu=1.0, io=0.5, cores=2) == 4.5  # one spare core: 4 x 1 s
    assert startup(4, cpu=1.0, io=0.0, cores=8) == 1.0  # 7 spare cores: side by side
    assert startup(2, cpu=1.0, io=0.0, cores=1) == 4.0  # half a core


def test_io_bound_start_is_recovered_from_the_measured_wall_time() -> None:
    """A server measured at 4 workers: 0.05 s of CPU but 0.5 s to be healthy (it waited on
    something). Its waiting is the same for any N, so it never tips the choice."""
    waits = choose(cores=2, durations=[0.25] * 64, server=ServerCost(0.05, 0.5, 4))
    quick = choose(cores=2, durations=[0.25] * 64, server=ServerCost(0.05, 0.2, 4))
    assert waits.workers == quick.workers
    assert waits.predicted[1] - quick.predicted[1] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "data",
    [{}, {"cpu": "x", "wall": 1, "workers": 1}, {"cpu": -1, "wall": 1, "workers": 1},
     {"cpu": float("nan"), "wall": 1, "workers": 1}, {"cpu": 1, "wall": 1, "workers": 0}, []],
)  # fmt: skip
def test_an_unusable_recorded_cost_is_measured_anew(data: object) -> None:
    assert ServerCost.from_dict(data) is None


def test_recorded_cost_round_trips() -> None:
    cost = ServerCost(0.0512, 0.1184, 4)
    assert ServerCost.from_dict(cost.to_dict()) == cost


def _cgroup(tmp_path: Path, cpu_max: str | None, group: str = "/user.slice/me") -> Path:
    root = tmp_path / "cgroup"
    folder = root / group.lstrip("/")
    folder.mkdir(parents=True)
    if cpu_max is not None:
        (folder / "cpu.max").write_text(cpu_max + "\n")
    (tmp_path / "self-cgroup").write_text(f"0::{group}\n")
    return root


def test_cores_are_the_affinity_capped_by_a_cgroup_quota(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, "150000 100000")  # 1.5 CPUs: 2 cores' worth of scheduling
    own = tmp_path / "self-cgroup"
    assert available_cores(lambda: 8, root, own) == 2
    assert available_cores(lambda: 1, root, own) == 1


def test_a_parent_cgroup_quota_counts_too(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, "max 100000")
    (root / "user.slice" / "cpu.max").write_text("300000 100000\n")
    assert available_cores(lambda: 8, root, tmp_path / "self-cgroup") == 3


def test_no_quota_or_no_cgroup_leaves_the_affinity(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, "max 100000")
    assert available_cores(lambda: 6, root, tmp_path / "self-cgroup") == 6
    assert available_cores(lambda: 6, tmp_path / "none", tmp_path / "missing") == 6


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    folder = tmp_path / "cgroup" / "cpu,cpuacct"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("200000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(lambda: 8, tmp_path / "cgroup", tmp_path / "missing") == 2


def test_this_machine_has_at_least_one_core() -> None:
    assert available_cores() >= 1


def test_the_server_cost_is_kept_per_server_command(tmp_path: Path) -> None:
    def key(**table: object) -> str:
        config = parse_config(
            {"tests": ".", **table}, root=tmp_path, source=tmp_path / "testpool.toml"
        )
        return server_key(config)

    assert key(server="a") == key(server="a", workers=4, test_timeout=9)
    assert key(server="a") != key(server="b")
    assert key(server="a") != key(server="a", env={"MODE": "slow"})
