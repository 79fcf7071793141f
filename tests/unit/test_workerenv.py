"""The stand-ins for the per-worker variables while pytest collects."""

from __future__ import annotations

import socket
import urllib.parse

import pytest

from testpool import pytest_plugin, pytest_reimport
from testpool.workerenv import COLLECTION_MARK, STAND_INS, WORKER_INDEX, collection_env

DEVELOPER = {
    "HOME": "/home/dev",
    "TEST_BASE_URL": "http://localhost:8888",
    "PORT": "8888",
    "DATA_DIR": "/home/dev/data",
    "API_TOKEN": "dev-token",
    "TESTPOOL_WORKER": "3",
}


def test_every_per_worker_variable_is_a_stand_in_and_the_rest_is_kept() -> None:
    env = collection_env(DEVELOPER, configured=())

    assert env == {"HOME": "/home/dev", **STAND_INS}
    assert "TESTPOOL_WORKER" not in env


def test_an_api_token_from_the_config_or_the_secrets_is_the_same_on_every_worker() -> None:
    env = collection_env(DEVELOPER, configured={"API_TOKEN", "PORT"})

    assert env["API_TOKEN"] == "dev-token"
    assert env["PORT"] == STAND_INS["PORT"], "only API_TOKEN can be shared by every worker"


def test_the_stand_ins_cannot_reach_anything_and_name_the_cause() -> None:
    url = urllib.parse.urlsplit(STAND_INS["TEST_BASE_URL"])
    assert url.hostname is not None and url.hostname.endswith(".invalid")
    assert COLLECTION_MARK in url.hostname
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(url.hostname, 80)
    assert int(STAND_INS["PORT"]) == 0  # still a number, and nothing listens on port 0
    with pytest.raises(NotADirectoryError):
        open(STAND_INS["DATA_DIR"] + "/sites.jsonc")  # noqa: SIM115
    assert COLLECTION_MARK in STAND_INS["DATA_DIR"] and COLLECTION_MARK in STAND_INS["API_TOKEN"]


def test_the_plugin_recognises_the_stand_ins_by_the_same_mark() -> None:
    assert pytest_plugin.COLLECTION_MARK == COLLECTION_MARK


def test_the_plugin_watches_the_reads_of_every_per_worker_variable() -> None:
    assert set(pytest_reimport.PER_WORKER) == {*STAND_INS, WORKER_INDEX}
