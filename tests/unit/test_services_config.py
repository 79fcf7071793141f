"""Configuration of services, requirements and phases: parsing, defaults and every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testpool.config import Config, parse_config
from testpool.config_services import Probe
from testpool.errors import ConfigError
from testpool.placeholders import render, service_references, service_values, used


def make(tmp_path: Path, **table: Any) -> Config:
    (tmp_path / "e2e").mkdir(exist_ok=True)
    return parse_config(
        {"server": "run-me", **table}, root=tmp_path, source=tmp_path / "testpool.toml"
    )


REDIS = {"command": "redis-server --port {port}", "port": "auto"}


def test_a_service_with_a_port_is_probed_on_it_by_default(tmp_path: Path) -> None:
    service = make(tmp_path, services={"db": REDIS}).services["db"]
    assert service.auto_port and service.port is None
    assert service.probe == Probe("tcp", "127.0.0.1:{port}")
    assert service.url == "http://127.0.0.1:{port}"
    assert service.startup_timeout is None  # the run's startup_timeout
    assert service.variable_prefix == "DB"


def test_every_service_key(tmp_path: Path) -> None:
    service = make(
        tmp_path,
        services={
            "db": REDIS,
            "mock-api": {
                "command": "{python} mock.py",
                "port": 7001,
                "probe": {"http": "http://127.0.0.1:{port}/health"},
                "url": "http://localhost:{port}/v1",
                "env": {"REDIS": "{services.db.url}"},
                "startup_timeout": 5,
                "depends_on": ["db"],
            },
        },
    ).services["mock-api"]
    assert service.port == 7001 and not service.auto_port
    assert service.probe == Probe("http", "http://127.0.0.1:{port}/health")
    assert service.url == "http://localhost:{port}/v1"
    assert service.env == {"REDIS": "{services.db.url}"}
    assert service.startup_timeout == 5.0
    assert service.depends_on == ("db",)
    assert service.variable_prefix == "MOCK_API"


def test_a_placeholder_naming_another_service_is_a_dependency(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        services={
            "db": REDIS,
            "worker": {"command": "run --db {services.db.port}", "probe": {"process": 1}},
        },
    )
    assert config.services["worker"].dependencies() == ("db",)
    assert config.services["worker"].probe == Probe("process", seconds=1.0)


def test_server_needs_what_it_names_and_server_requires(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        server="app --redis {services.db.url}",
        env={"MOCK": "{services.mock.port}"},
        server_requires=["extra"],
        services={
            "db": REDIS,
            "mock": {"command": "m", "port": "auto"},
            "extra": {"command": "e", "port": "auto"},
        },
    )
    assert set(config.services_for_server()) == {"db", "mock", "extra"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"services": {"db": {"port": 1}}}, r"\[services.db\]: 'command' is required"),
        ({"services": {"db": {"command": "x"}}}, "'probe' is required for a service without a port"),
        ({"services": {"db": {**REDIS, "port": "any"}}}, "'port' must be a port number or \"auto\""),
        ({"services": {"db": {**REDIS, "port": 80}}}, "'port' must be from 1024 to 65535"),
        ({"services": {"db": {**REDIS, "colour": 1}}}, "unknown key 'colour'"),
        ({"services": {"db": {**REDIS, "depend_on": []}}}, "did you mean 'depends_on'"),
        ({"services": {"db": {**REDIS, "probe": {"udp": "x"}}}}, "unknown key 'udp'"),
        ({"services": {"db": {**REDIS, "probe": {"http": "x", "tcp": "y"}}}}, "one of http, tcp or process"),
        ({"services": {"db": {**REDIS, "probe": {"http": "localhost"}}}}, "'probe.http' must be an http"),
        ({"services": {"db": {**REDIS, "probe": {"tcp": "localhost"}}}}, "'probe.tcp' must be HOST:PORT"),
        ({"services": {"db": {**REDIS, "probe": {"process": 0}}}}, "'probe.process' must be a positive"),
        ({"services": {"db": {**REDIS, "startup_timeout": float("nan")}}}, "'startup_timeout' must be a positive"),
        ({"services": {"db": {**REDIS, "env": {"A": 1}}}}, "'env.A' must be a string"),
        ({"services": {"db": {**REDIS, "depends_on": ["cache"]}}}, "names unknown service 'cache' \\(known services: db\\)"),
        ({"services": {"1db": REDIS}}, "a service name starts with a letter"),
        ({"services": {"db": "redis"}}, "must be a table"),
        ({"services": {"test-base": REDIS}}, "TEST_BASE_URL is one testpool sets itself"),
        ({"services": {"my-db": REDIS, "my_db": REDIS}}, "exports MY_DB_PORT, as service 'my-db' does"),
        ({"services": {"db": {"command": "x", "probe": {"process": 1}, "env": {"P": "{port}"}}}}, "has no 'port'"),
        ({"server": "app {services.db.port}"}, "'server' names unknown service 'db' \\(no services are configured\\)"),
        ({"server": "app {services.db.host}", "services": {"db": REDIS}}, "offers {services.NAME.port}"),
        ({"env": {"X": "{services.db.port}"}, "services": {"db": {"command": "x", "probe": {"process": 1}}}}, "service 'db' has no port"),
        ({"server_requires": ["db"]}, "'server_requires' names unknown service 'db'"),
        ({"requires": {"tests/*": ["db"]}}, "'requires.\"tests/\\*\"' names unknown service 'db'"),
        ({"requires": {"tests/*": "db"}}, "must be a list of service names"),
        ({"services": {"db": {**REDIS, "probe": {"http": "http://127.0.0.1:{prot}/"}}}}, "unknown placeholder {prot} in 'probe.http': did you mean {port}"),
        ({"services": {"db": {**REDIS, "url": "redis://{host}:{port}"}}}, "unknown placeholder {host} in 'url'"),
    ],
)  # fmt: skip
def test_service_errors_name_the_key(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(tmp_path, **table)


def test_a_dependency_cycle_is_an_error_that_shows_it(tmp_path: Path) -> None:
    services = {
        "a": {**REDIS, "depends_on": ["b"]},
        "b": {**REDIS, "env": {"C": "{services.c.port}"}},
        "c": {**REDIS, "depends_on": ["a"]},
    }
    with pytest.raises(ConfigError, match="in a cycle: a -> b -> c -> a"):
        make(tmp_path, services=services)


def test_phases(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        phases=[
            {"name": "smoke", "select": ["e2e/smoke/*"], "mode": "sequential", "required": True},
            {"name": "slow", "marker": "slow"},
        ],
    )
    smoke, slow = config.phases
    assert (smoke.name, smoke.select, smoke.mode, smoke.required) == (
        "smoke", ("e2e/smoke/*",), "sequential", True,
    )  # fmt: skip
    assert (slow.marker, slow.mode, slow.required) == ("slow", "parallel", False)


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([{"select": ["x"]}], "'name' is required"),
        ([{"name": "a"}], "phase 'a': needs 'select'"),
        ([{"name": "a", "select": ["x"], "mode": "serial"}], "'mode' must be 'parallel' or 'sequential'"),
        ([{"name": "a", "select": ["x"], "required": "yes"}], "'required' must be true or false"),
        ([{"name": "a", "select": "x"}], "'select' must be a list"),
        ([{"name": "a", "select": ["x"], "when": 1}], "unknown key 'when'"),
        ([{"name": "a", "select": ["x"]}, {"name": "a", "select": ["y"]}], "two phases have this name"),
        ([{"name": "other", "select": ["x"]}], "'other' is kept for the tests no phase selects"),
        (["smoke"], "#1: must be a table"),
    ],
)  # fmt: skip
def test_phase_errors(tmp_path: Path, phases: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(tmp_path, phases=phases)


def test_a_marker_phase_needs_pytest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'marker' needs runner = 'pytest'"):
        make(tmp_path, runner="go", phases=[{"name": "a", "marker": "smoke"}])


def test_service_placeholders_render_in_one_pass_with_the_rest() -> None:
    values = {"port": "6379", "services.db.url": "redis://x:{port}"}
    text = "${PORT} {port} {services.db.url} {{services.db.url}} {sys.argv} {}"
    assert render(text, values) == "${PORT} 6379 redis://x:{port} {services.db.url} {sys.argv} {}"
    assert used(text) == ["port", "services.db.url"]


def test_service_placeholders() -> None:
    assert service_references("a {services.db.port} b {services.mock-api.url}") == [
        ("db", "port"),
        ("mock-api", "url"),
    ]
    assert service_values([("db", 6379, "redis://127.0.0.1:6379"), ("q", None, "")]) == {
        "services.db.port": "6379",
        "services.db.url": "redis://127.0.0.1:6379",
    }


def test_the_readme_documents_every_key() -> None:
    from testpool.config import _SCHEMA
    from testpool.config_services import _PHASE_KEYS, _SERVICE_KEYS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for key in [*_SCHEMA, *_SERVICE_KEYS, *_PHASE_KEYS]:
        assert f"| `{key}` |" in readme, key
    for probe in ("http", "tcp", "process"):
        assert f"{{ {probe} = " in readme, probe
