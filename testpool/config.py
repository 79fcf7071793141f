"""Load and validate testpool's configuration.

The configuration lives in ``[tool.testpool]`` of a project's ``pyproject.toml`` or at the top
level of a ``testpool.toml``. The project root is the folder that holds that file; every
relative path in the configuration is relative to it. The CLI builds a :class:`Config` here
and then only ever passes the value around.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from testpool.config_services import (
    PhaseConfig,
    ServiceConfig,
    check_services,
    offers,
    parse_names,
    parse_phases,
    parse_requires,
    parse_services,
)
from testpool.errors import ConfigError
from testpool.placeholders import service_references
from testpool.sources import detect_inputs

if TYPE_CHECKING:
    from testpool.distributed import QueueOptions
    from testpool.shard import Shard

MAX_WORKERS = 8
AUTO = "auto"  # ``workers = "auto"``: chosen per run (see testpool.autoworkers)
RUNNERS = ("pytest", "go", "command")
ISOLATIONS = ("worker", "test")
PYTEST_MODES = ("session", "process")


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know about the project. Built by :func:`load_config`."""

    root: Path
    source: Path
    server: str
    workers: int | str = 1  # a count, or AUTO until the run resolves it
    port_base: int = 9000
    health_path: str = "/health"
    health_interval: float = 0.2
    startup_timeout: float = 60.0
    data_seed: str | None = None
    isolation: str = "worker"
    secrets: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    tests: str = "e2e"
    runner: str = "pytest"
    discover: str | None = None
    run: str | None = None
    helpers: tuple[str, ...] | None = None
    inputs: tuple[str, ...] = ()
    inputs_detected: bool = False  # no `inputs` key: the usual source places (testpool.sources)
    test_timeout: float = 300.0
    cache_file: str = ".test-cache.json"
    results_dir: str = "test-results"
    keep_logs: int = 5
    pytest_mode: str = "session"
    pytest_args: tuple[str, ...] = ()
    # destination under DATA_DIR -> template file (root-relative), rendered per worker
    files: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    requires: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (test id glob, services)
    server_requires: tuple[str, ...] = ()
    phases: tuple[PhaseConfig, ...] = ()

    def path(self, relative: str) -> Path:
        """A configured path, resolved against the project root."""
        return (self.root / relative).resolve()

    @property
    def tests_path(self) -> Path:
        return self.path(self.tests)

    @property
    def seed_path(self) -> Path | None:
        return self.path(self.data_seed) if self.data_seed else None

    @property
    def cache_path(self) -> Path:
        return self.path(self.cache_file)

    @property
    def results_path(self) -> Path:
        return self.path(self.results_dir)

    def file_templates(self) -> dict[str, Path]:
        """``files``: each destination (relative to a ``DATA_DIR``) and its template's path."""
        return {dest: self.path(source) for dest, source in self.files.items()}

    def port(self, worker: int) -> int:
        return self.port_base + worker

    @property
    def worker_count(self) -> int:
        """``workers`` once resolved (the run pipeline replaces AUTO with a count)."""
        if not isinstance(self.workers, int):
            raise ValueError("workers = 'auto' is resolved before the run starts")
        return self.workers

    def services_for_server(self) -> tuple[str, ...]:
        """The services every worker's server needs: ``server_requires`` plus those that
        ``server``, ``env``, ``health_path`` and the ``files`` templates name in placeholders
        (read from the configuration as written, never from a filled-in copy)."""
        texts = [self.server, self.health_path, *self.env.values(), *self._template_texts()]
        referenced = [name for text in texts for name, _ in service_references(text)]
        return tuple(dict.fromkeys([*self.server_requires, *referenced]))

    def _template_texts(self) -> list[str]:
        texts = []
        for path in self.file_templates().values():
            try:
                texts.append(path.read_bytes().decode("utf-8"))
            except (OSError, UnicodeDecodeError):
                continue  # validate() has said so already
        return texts

    def run_affecting(self) -> dict[str, object]:
        """The settings that can change a test's result; part of every cache key."""
        return {
            "server": self.server,
            "runner": self.runner,
            "env": dict(sorted(self.env.items())),
            "isolation": self.isolation,
            "tests": self.tests,
            "discover": self.discover,
            "run": self.run,
            "pytest_mode": self.pytest_mode,
            "pytest_args": list(self.pytest_args),
            "health_path": self.health_path,
            **({"files": dict(sorted(self.files.items()))} if self.files else {}),
        }


@dataclass(frozen=True)
class RunOptions:
    """The per-invocation choices from the command line (not part of the config file)."""

    full: bool = False
    patterns: tuple[str, ...] = ()  # --file, any of them
    runner_args: tuple[str, ...] = ()  # `-- ARGS`: the runner's own test selection
    verbose: bool = False
    retries: int = 0
    max_failures: int | None = None
    fail_on_flaky: bool = False
    shard: Shard | None = None  # run only this part of the suite (--shard I/N)
    queue: QueueOptions | None = None  # take tests from a queue shared by machines


# key -> (accepted python types, human description)
_NUMBER = (int, float)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "workers": ((int, str), 'an integer from 1 to 8, or "auto"'),
    "port_base": ((int,), "an integer port number"),
    "server": ((str,), "a command string"),
    "health_path": ((str,), "a URL path starting with '/'"),
    "health_interval": (_NUMBER, "a positive number of seconds"),
    "startup_timeout": (_NUMBER, "a positive number of seconds"),
    "data_seed": ((str,), "a folder path"),
    "isolation": ((str,), "'worker' or 'test'"),
    "secrets": ((list,), "a list of file paths"),
    "env": ((dict,), "a table of string values"),
    "tests": ((str,), "a folder path"),
    "runner": ((str,), "'pytest', 'go' or 'command'"),
    "discover": ((str,), "a command string"),
    "run": ((str,), "a command template containing {id}"),
    "helpers": ((list,), "a list of file paths or globs"),
    "inputs": ((list,), "a list of globs"),
    "test_timeout": (_NUMBER, "a positive number of seconds"),
    "cache_file": ((str,), "a file path"),
    "results_dir": ((str,), "a folder path"),
    "keep_logs": ((int,), "a number of runs, at least 1"),
    "pytest_mode": ((str,), "'session' or 'process'"),
    "pytest_args": ((list,), "a list of strings"),
    "files": ((dict,), "a table of paths in DATA_DIR to template files"),
    "services": ((dict,), "a table of service tables ([services.NAME])"),
    "requires": ((dict,), "a table of test id globs to lists of service names"),
    "server_requires": ((list,), "a list of service names"),
    "phases": ((list,), "an array of phase tables ([[phases]])"),
}

_CONFIG_FIELDS = {f.name for f in fields(Config)} - {"root", "source", "inputs_detected"}
assert set(_SCHEMA) == _CONFIG_FIELDS, "schema and Config fields drifted apart"


def find_config_file(start: Path) -> tuple[Path, bool]:
    """Find the configuration from ``start`` upward. Returns (file, is_pyproject)."""
    for folder in (start, *start.parents):
        candidate = folder / "testpool.toml"
        if candidate.is_file():
            return candidate, False
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "testpool" in _tool_table(_read_toml(pyproject), pyproject):
            return pyproject, True
    raise ConfigError(
        "no testpool configuration found: add [tool.testpool] to pyproject.toml or create "
        f"testpool.toml (searched {start} and its parents)"
    )


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Read, validate and return the configuration.

    Called by the CLI. ``path`` is ``--config``; without it the file is searched from ``cwd``.
    """
    if path is None:
        source, is_pyproject = find_config_file((cwd or Path.cwd()).resolve())
    else:
        source = path.resolve()
        if not source.is_file():
            raise ConfigError(f"config file not found: {path}")
        is_pyproject = source.name == "pyproject.toml"
    document = _read_toml(source)
    if is_pyproject:
        table = _tool_table(document, source).get("testpool")
        if table is None:
            raise ConfigError(f"{source}: no [tool.testpool] table")
        where = f"{source.name} [tool.testpool]"
    else:
        table = document
        where = source.name
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    return parse_config(table, root=source.parent, source=source, where=where)


def parse_config(
    table: Mapping[str, Any], *, root: Path, source: Path, where: str = "config"
) -> Config:
    """Validate a raw table into a :class:`Config`. Every error names the offending key."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _SCHEMA:
            hint = difflib.get_close_matches(key, sorted(_SCHEMA), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{where}: unknown key '{key}'{suggestion}")
        types, description = _SCHEMA[key]
        # bool is an int subclass; `workers = true` is a mistake, not 1.
        wrong_word = key == "workers" and isinstance(value, str) and value != AUTO
        if isinstance(value, bool) or not isinstance(value, types) or wrong_word:
            raise ConfigError(
                f"{where}: '{key}' must be {description}, got {type(value).__name__} {value!r}"
            )
        values[key] = value
    if "server" not in values:
        raise ConfigError(f"{where}: 'server' is required (the command that starts a dev server)")
    for key in ("secrets", "helpers", "inputs", "pytest_args"):
        if key in values:
            items = values[key]
            if not all(isinstance(item, str) for item in items):
                raise ConfigError(f"{where}: '{key}' must be {_SCHEMA[key][1]}")
            values[key] = tuple(items)
    for key in ("env", "files"):
        if key in values:
            bad = [name for name, v in values[key].items() if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{where}: '{key}.{bad[0]}' must be a string")
    for key in ("health_interval", "startup_timeout", "test_timeout"):
        if key in values:
            values[key] = float(values[key])
    if "services" in values:
        values["services"] = parse_services(values["services"], where)
    if "requires" in values:
        values["requires"] = parse_requires(values["requires"], where)
    if "server_requires" in values:
        values["server_requires"] = parse_names(
            values["server_requires"], f"{where}: 'server_requires'"
        )
    if "phases" in values:
        values["phases"] = parse_phases(values["phases"], where)
    if "inputs" not in values:
        # A server change must never leave a test cached: without `inputs`, the server's
        # usual source places count (as `testpool init` would write them).
        tests = str(values.get("tests", Config.tests))
        values["inputs"] = tuple(detect_inputs(root, tests, str(values["server"])))
        values["inputs_detected"] = True
    config = Config(root=root, source=source, **values)
    validate(config, where)
    return config


def validate(config: Config, where: str = "config") -> None:
    """Check value ranges and cross-key rules; also used after CLI overrides."""
    if config.workers != AUTO and not (
        isinstance(config.workers, int) and 1 <= config.workers <= MAX_WORKERS
    ):
        raise ConfigError(
            f"{where}: 'workers' must be from 1 to {MAX_WORKERS} or \"auto\", "
            f"got {config.workers!r}"
        )
    if not 1024 <= config.port_base <= 65535 - MAX_WORKERS:
        raise ConfigError(f"{where}: 'port_base' must be from 1024 to {65535 - MAX_WORKERS}")
    if config.keep_logs < 1:
        raise ConfigError(f"{where}: 'keep_logs' must be at least 1, got {config.keep_logs}")
    if not config.server.strip():
        raise ConfigError(f"{where}: 'server' must not be empty")
    if not config.health_path.startswith("/"):
        raise ConfigError(f"{where}: 'health_path' must start with '/'")
    for key in ("health_interval", "startup_timeout", "test_timeout"):
        # TOML has nan and inf; neither is a duration.
        if not (math.isfinite(getattr(config, key)) and getattr(config, key) > 0):
            raise ConfigError(f"{where}: '{key}' must be a positive number of seconds")
    for key, allowed in (
        ("isolation", ISOLATIONS),
        ("runner", RUNNERS),
        ("pytest_mode", PYTEST_MODES),
    ):
        if getattr(config, key) not in allowed:
            choices = ", ".join(f"'{a}'" for a in allowed)
            raise ConfigError(f"{where}: '{key}' must be one of {choices}")
    if config.runner == "command":
        if not config.discover or not config.run:
            raise ConfigError(f"{where}: runner 'command' needs both 'discover' and 'run'")
        if "{id}" not in config.run:
            raise ConfigError(f"{where}: 'run' must contain {{id}}")
    elif config.discover or config.run:
        raise ConfigError(f"{where}: 'discover' and 'run' only apply to runner = 'command'")
    _check_placeholders(config, where)
    _check_files(config, where)
    if config.data_seed is not None:
        seed = config.seed_path
        if seed is None or not seed.is_dir():
            raise ConfigError(f"{where}: 'data_seed' folder not found: {config.data_seed}")
        from testpool.isolation import check_seed

        problem = check_seed(seed)
        if problem:
            raise ConfigError(f"{where}: 'data_seed' cannot be copied: {problem}")
    if not config.tests_path.exists():
        raise ConfigError(f"{where}: 'tests' path not found: {config.tests}")
    if config.cache_path.is_dir():
        raise ConfigError(f"{where}: 'cache_file' is a folder, not a file: {config.cache_file}")
    if config.results_path.exists() and not config.results_path.is_dir():
        raise ConfigError(f"{where}: 'results_dir' is not a folder: {config.results_dir}")
    check_services(config, where)


def _check_placeholders(config: Config, where: str) -> None:
    from testpool import placeholders

    services = offers(config.services)
    placeholders.check(config.server, where=where, key="server", services=services)
    placeholders.check(config.health_path, where=where, key="health_path", services=services)
    for name, value in config.env.items():
        placeholders.check(value, where=where, key=f"env.{name}", services=services)
    if config.run is not None:
        placeholders.check(
            config.run, where=where, key="run", allowed=(*placeholders.EVERYWHERE, "id")
        )
    if config.discover is not None:
        placeholders.check(
            config.discover, where=where, key="discover", allowed=(*placeholders.RUN_WIDE, "args")
        )


def _check_files(config: Config, where: str) -> None:
    """Each ``files`` entry: a plain relative destination, and a UTF-8 template whose
    placeholders are known."""
    from testpool import placeholders

    services = offers(config.services)
    for dest, source in config.files.items():
        key = f"files.{dest}"
        parts = PurePosixPath(dest).parts
        if not parts or PurePosixPath(dest).is_absolute() or ".." in parts or "\\" in dest:
            raise ConfigError(
                f"{where}: '{key}': the destination must be a path inside DATA_DIR "
                "(relative, without '..')"
            )
        path = config.path(source)
        try:
            text = path.read_bytes().decode("utf-8")
        except IsADirectoryError:
            raise ConfigError(f"{where}: '{key}': {source} is a folder, not a file") from None
        except FileNotFoundError:
            raise ConfigError(f"{where}: '{key}': template not found: {source}") from None
        except OSError as error:
            raise ConfigError(f"{where}: '{key}': cannot read {source}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: '{key}': {source} is not UTF-8 text") from None
        placeholders.check(text, where=where, key=key, source=source, services=services)


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply CLI flags (None means "not given") and re-validate."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return config
    updated = replace(config, **given)
    validate(updated, "command line")
    return updated


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text (line {line})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None


def _tool_table(document: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """``[tool]`` of a pyproject.toml; anything but a table there is an error naming the file."""
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(
            f"{path}: 'tool' must be a table (as in [tool.testpool]), got "
            f"{type(tool).__name__} {tool!r}"
        )
    return tool


def state_home() -> Path:
    """Per-user folder for run records (``TESTPOOL_STATE_DIR`` overrides it)."""
    override = os.environ.get("TESTPOOL_STATE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "testpool"
