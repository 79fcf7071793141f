"""Configuration parsing and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from testpool.config import load_config, parse_config, with_overrides
from testpool.errors import ConfigError


def make(tmp_path: Path, **table: object) -> object:
    (tmp_path / "e2e").mkdir(exist_ok=True)
    return parse_config(
        {"server": "run-me", **table}, root=tmp_path, source=tmp_path / "testpool.toml"
    )


def test_defaults(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert config.workers == 1  # type: ignore[attr-defined]
    assert config.port_base == 9000  # type: ignore[attr-defined]
    assert config.health_path == "/health"  # type: ignore[attr-defined]
    assert config.health_interval == 0.2  # type: ignore[attr-defined]
    assert config.startup_timeout == 60  # type: ignore[attr-defined]
    assert config.test_timeout == 300  # type: ignore[attr-defined]
    assert config.cache_file == ".test-cache.json"  # type: ignore[attr-defined]
    assert config.results_dir == "test-results"  # type: ignore[attr-defined]
    assert config.isolation == "worker" and config.runner == "pytest"  # type: ignore[attr-defined]
    assert config.pytest_mode == "session"  # type: ignore[attr-defined]


def test_booleans_are_not_integers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'workers' must be an integer"):
        make(tmp_path, workers=True)


def test_run_needs_id_placeholder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'run' must contain \{id\}"):
        make(tmp_path, runner="command", discover="ls", run="echo")


def test_discover_only_for_command_runner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only apply to runner = 'command'"):
        make(tmp_path, discover="ls")


def test_overrides_are_validated(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert with_overrides(config, workers=4, startup_timeout=None).workers == 4  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="command line: 'workers'"):
        with_overrides(config, workers=0)  # type: ignore[arg-type]


def test_testpool_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "e2e").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.testpool]\nserver = "from-pyproject"\n')
    (tmp_path / "testpool.toml").write_text('server = "from-testpool-toml"\n')
    assert load_config(cwd=tmp_path).server == "from-testpool-toml"


def test_pyproject_without_table_is_skipped_when_searching(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    (inner / "e2e").mkdir(parents=True)
    (tmp_path / "e2e").mkdir()
    (tmp_path / "testpool.toml").write_text('server = "outer"\n')
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    config = load_config(cwd=inner)
    assert config.server == "outer" and config.root == tmp_path


def test_paths_resolve_against_the_root(tmp_path: Path) -> None:
    config = make(tmp_path, results_dir="out")
    assert config.results_path == tmp_path / "out"  # type: ignore[attr-defined]


def test_without_inputs_the_usual_server_sources_count(tmp_path: Path) -> None:
    # Regression: no `inputs` key meant no server source at all, so an edited server left
    # every passing test cached.
    for folder in ("src", "api", "e2e"):
        (tmp_path / folder).mkdir()
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "server.js").write_text("")
    config = parse_config(
        {"server": "node server.js --port {port}", "tests": "e2e"},
        root=tmp_path, source=tmp_path / "testpool.toml",
    )  # fmt: skip
    assert config.inputs == ("src/**", "api/**", "package.json", "server.js")
    assert config.inputs_detected
    # The tests' own top folder is never a server source (the tests have their own keys).
    (tmp_path / "app" / "e2e").mkdir(parents=True)
    config = parse_config(
        {"server": "python3 -m app", "tests": "app/e2e"},
        root=tmp_path, source=tmp_path / "testpool.toml",
    )  # fmt: skip
    assert config.inputs == ("src/**", "api/**", "package.json")


def test_explicit_inputs_are_kept_even_when_empty(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    config = make(tmp_path, inputs=[])
    assert config.inputs == () and not config.inputs_detected  # type: ignore[attr-defined]
    config = make(tmp_path, inputs=["lib/**"])
    assert config.inputs == ("lib/**",)  # type: ignore[attr-defined]
