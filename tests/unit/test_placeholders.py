"""Placeholders: the syntax, the checks (one error naming the key), and one-pass rendering."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from testpool.config import parse_config
from testpool.errors import ConfigError
from testpool.placeholders import (
    collection_values,
    render,
    scripts_folder,
    used,
    uses_worker,
    worker_values,
)
from testpool.workerenv import STAND_INS

VALUES = worker_values("r1", 2, 9002, Path("/tmp/data dir"))


def test_values_of_a_worker() -> None:
    assert {
        "python": sys.executable,
        "bin": scripts_folder(),
        "run_id": "r1",
        "port": "9002",
        "base_url": "http://127.0.0.1:9002",
        "data_dir": "/tmp/data dir",
        "worker": "2",
    } == VALUES
    assert Path(scripts_folder(), "testpool").exists(), "the venv's scripts folder"


def test_render_fills_every_placeholder_in_one_pass() -> None:
    assert render("{base_url}/v1?w={worker}", VALUES) == "http://127.0.0.1:9002/v1?w=2"
    # A value that looks like a placeholder is not expanded again.
    assert render("{a}", {"a": "{port}"}) == "{port}"


def test_other_braces_are_kept_and_doubled_braces_escape_a_placeholder() -> None:
    template = """${HOME} {"a": {"port": {port}}} awk '{ print $1 }' {{ .Name }} {{port}}"""
    assert render(template, VALUES) == (
        """${HOME} {"a": {"port": 9002}} awk '{ print $1 }' {{ .Name }} {port}"""
    )
    assert used(template) == ["port"]


def test_shell_rendering_quotes_only_what_the_shell_would_split() -> None:
    assert render("serve --data {data_dir} --port {port}", VALUES, shell=True) == (
        "serve --data '/tmp/data dir' --port 9002"
    )
    assert render("{python} x", VALUES, shell=True) == f"{sys.executable} x"
    assert render("t {id}", {"id": "a b; rm -rf x"}, shell=True) == "t 'a b; rm -rf x'"


def test_uses_worker() -> None:
    assert uses_worker("{base_url}/v1") and uses_worker("x{data_dir}")
    assert not uses_worker("{python} {bin} {run_id}") and not uses_worker("{{port}}")


def test_collection_values_are_the_stand_ins() -> None:
    values = collection_values("r1")
    assert values["base_url"] == STAND_INS["TEST_BASE_URL"]
    assert values["port"] == "0" and values["data_dir"] == STAND_INS["DATA_DIR"]


def _config(tmp_path: Path, **table: object) -> object:
    (tmp_path / "e2e").mkdir(exist_ok=True)
    return parse_config(
        {"server": "run-me", **table}, root=tmp_path, source=tmp_path / "testpool.toml"
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"server": "app --port {prot}"},
            "unknown placeholder {prot} in 'server': did you mean {port}?",
        ),
        ({"env": {"URL": "{host}/v1"}}, "unknown placeholder {host} in 'env.URL'"),
        ({"health_path": "/{id}"}, "{id} is only known in 'run'"),
        (
            {"runner": "command", "discover": "ls {data_dir}", "run": "x {id}"},
            "{data_dir} is not known in 'discover': it runs before any worker exists",
        ),
        (
            {"runner": "command", "discover": "ls", "run": "x {id} {args}"},
            "{args} is only known in 'discover'",
        ),
    ],
)
def test_unknown_placeholder_is_a_config_error_naming_the_key(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, **table)
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_an_error_says_how_to_write_the_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"write \{\{prot\}\} for the text \{prot\}"):
        _config(tmp_path, server="{prot}")


def test_known_placeholders_pass(tmp_path: Path) -> None:
    _config(
        tmp_path,
        server="{bin}/serve --port {port} --data {data_dir} {{literal}} ${HOME}",
        env={"SERVER_URL": "{base_url}/v1", "NAME": "w{worker}-{run_id}"},
        health_path="/health?from={python}",
    )
    _config(tmp_path, runner="command", discover="{python} list.py {args}", run="{bin}/t {id}")


# --- the shared services' placeholders, checked with the same rules ---------------------------

DB = {"command": "redis-server --port {port}", "port": "auto"}
PORTLESS = {"command": "worker --run", "probe": {"process": 1}}


def test_service_placeholders_pass_where_the_workers_have_them(tmp_path: Path) -> None:
    (tmp_path / "app.ini").write_text("db = {services.db.url}\nport = {port}\n")
    config = _config(
        tmp_path,
        server="app --db {services.db.port} --port {port}",
        env={"DB": "{services.db.url}/{worker}"},
        health_path="/health?db={services.db.port}",
        files={"app.ini": "app.ini"},
        services={"db": DB},
    )
    assert config.services_for_server() == ("db",)  # type: ignore[attr-defined]


def test_a_service_named_only_in_a_files_template_or_health_path_is_the_servers(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.ini").write_text("cache = {services.cache.port}\n{{services.db.port}}\n")
    config = _config(
        tmp_path,
        files={"app.ini": "app.ini"},
        health_path="/health?q={services.queue.url}",
        services={"db": DB, "cache": DB, "queue": DB},
    )
    # An escaped one is text, not a reference.
    assert set(config.services_for_server()) == {"cache", "queue"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"server": "app {services.cache.port}"}, "'server' names unknown service 'cache' (known services: db)"),
        ({"health_path": "/{services.cache.url}"}, "'health_path' names unknown service 'cache'"),
        ({"env": {"X": "{services.db.host}"}}, "a service offers {services.NAME.port} and {services.NAME.url}"),
        ({"env": {"X": "{services.db}"}}, "a service offers {services.NAME.port}"),
        ({"server": "app {services.q.port}", "services": {"db": DB, "q": PORTLESS}}, "service 'q' has no port"),
        ({"runner": "command", "discover": "ls", "run": "t {id} {services.db.port}"}, "the services' placeholders are not known in 'run'"),
        ({"runner": "command", "discover": "ls {services.db.url}", "run": "t {id}"}, "not known in 'discover'"),
        ({"server": "app {url}"}, "{url} is a service's own URL"),
        ({"services": {"db": {**DB, "env": {"U": "{base_url}"}}}}, "[services.db]: unknown placeholder {base_url} in 'env.U'"),
        ({"services": {"db": {**DB, "command": "x {worker}"}}}, "unknown placeholder {worker} in 'command'"),
        ({"services": {"db": {**DB, "url": "http://h:{port}/{url}"}}}, "unknown placeholder {url} in 'url'"),
        ({"services": {"db": {**DB, "env": {"S": "{services.db.port}"}}}}, "'env.S' names the service itself"),
        ({"services": {"db": {**PORTLESS, "url": "http://x", "env": {"P": "{port}"}}}}, "'env.P' uses {port} but it has no 'port'"),
    ],
)  # fmt: skip
def test_service_placeholder_errors_are_one_line_exit_2(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    table = {"services": {"db": DB}, **table}
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, **table)
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_an_unknown_service_in_a_files_template_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "app.ini").write_text("port = {port}\ncache = {services.cache.port}\n")
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, files={"app.ini": "app.ini"}, services={"db": DB})
    assert caught.value.message == (
        "config: 'files.app.ini' (app.ini, line 2) names unknown service 'cache' "
        "(known services: db)"
    )


def test_a_service_has_its_own_values_and_the_run_wide_ones(tmp_path: Path) -> None:
    _config(
        tmp_path,
        services={
            "db": {
                **DB,
                "command": "{bin}/db --port {port} --dir {data_dir} --run {run_id} {{port}}",
                "url": "redis://127.0.0.1:{port}/0",
                "env": {"SELF": "{url}", "PY": "{python}"},
            },
            "api": {
                "command": "{python} api.py --db {services.db.url}",
                "port": "auto",
                "probe": {"http": "http://127.0.0.1:{port}/health?u={url}"},
            },
            "q": {**PORTLESS, "url": "http://elsewhere/{run_id}", "env": {"U": "{url}"}},
        },
    )


def test_collection_values_have_stand_ins_for_the_services() -> None:
    values = collection_values("r1", ["db"])
    assert values["services.db.port"] == "0"
    assert values["services.db.url"] == STAND_INS["TEST_BASE_URL"]
    assert render("{services.db.url}/x", values) == STAND_INS["TEST_BASE_URL"] + "/x"
