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
