"""The value behind the ``testpool_worker`` fixture, read from an environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from testpool.pytest_fixtures import TestpoolWorker, WorkerEnvironmentError

WORKER_2 = {
    "TEST_BASE_URL": "http://127.0.0.1:9002",
    "PORT": "9002",
    "DATA_DIR": "/tmp/testpool-abc",
    "API_TOKEN": "test-token-2",
    "TESTPOOL_WORKER": "2",
}


def test_reads_what_testpool_sets_for_a_worker() -> None:
    worker = TestpoolWorker.from_environ(WORKER_2)

    assert worker == TestpoolWorker(
        index=2,
        port=9002,
        base_url="http://127.0.0.1:9002",
        data_dir=Path("/tmp/testpool-abc"),
        api_token="test-token-2",
    )
    with pytest.raises(AttributeError):
        worker.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://localhost:8000/", 8000), ("https://staging.example.com", 443), ("http://h", 80)],
)
def test_outside_testpool_the_index_defaults_to_0_and_the_port_to_the_urls(
    url: str, port: int
) -> None:
    worker = TestpoolWorker.from_environ({"TEST_BASE_URL": url, "DATA_DIR": "d", "API_TOKEN": "t"})

    assert (worker.index, worker.port) == (0, port)
    assert not worker.base_url.endswith("/")


def test_names_every_missing_variable() -> None:
    with pytest.raises(WorkerEnvironmentError) as raised:
        TestpoolWorker.from_environ({"TEST_BASE_URL": "http://h:1", "DATA_DIR": " "})
    assert str(raised.value).startswith("DATA_DIR and API_TOKEN are not set: run the tests")

    with pytest.raises(WorkerEnvironmentError, match=r"^API_TOKEN is not set"):
        TestpoolWorker.from_environ({"TEST_BASE_URL": "http://h:1", "DATA_DIR": "d"})


@pytest.mark.parametrize(
    "changed", [{"PORT": "eighty"}, {"TESTPOOL_WORKER": "x"}, {"PORT": "", "TEST_BASE_URL": "h"}]
)
def test_a_malformed_value_is_an_error_not_a_guess(changed: dict[str, str]) -> None:
    with pytest.raises(WorkerEnvironmentError, match="bad worker environment"):
        TestpoolWorker.from_environ({**WORKER_2, **changed})


def test_is_not_collected_as_a_test_class() -> None:
    assert TestpoolWorker.__test__ is False
