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
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from testpool.errors import ConfigError
from testpool.placeholders import SERVICE_ATTRIBUTES, names_in, service_references

MAX_WORKERS = 8
RUNNERS = ("pytest", "go", "command")
ISOLATIONS = ("worker", "test")
PYTEST_MODES = ("session", "process")
PHASE_MODES = ("parallel", "sequential")
PROBES = ("http", "tcp", "process")
# The phase of the tests that no configured phase selects (it runs last).
OTHER_PHASE = "other"


@dataclass(frozen=True)
class Probe:
    """How a service is known to be ready: ``http`` (a URL answers 2xx), ``tcp`` (a
    ``host:port`` accepts a connection) or ``process`` (it stayed alive ``seconds``)."""

    kind: str
    target: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ServiceConfig:
    """One ``[services.NAME]`` table: a process started once per run and shared by the workers."""

    name: str
    command: str
    probe: Probe
    port: int | None = None  # a fixed port, or None: no port, or "auto" (see auto_port)
    auto_port: bool = False
    url: str | None = None  # exported as NAME_URL; default http://127.0.0.1:{port}
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float | None = None  # None: the run's startup_timeout
    depends_on: tuple[str, ...] = ()

    @property
    def has_port(self) -> bool:
        return self.auto_port or self.port is not None

    @property
    def variable_prefix(self) -> str:
        """``NAME`` in ``NAME_PORT``/``NAME_URL``: upper case, anything but letters and digits
        turned into ``_`` (``mock-api`` exports ``MOCK_API_PORT``)."""
        return variable_prefix(self.name)

    def dependencies(self) -> tuple[str, ...]:
        """``depends_on`` plus every other service this one's placeholders name."""
        named = [self.command, self.url or "", self.probe.target, *self.env.values()]
        referenced = [ref for text in named for ref, _ in service_references(text)]
        found = dict.fromkeys([*self.depends_on, *referenced])
        found.pop(self.name, None)
        return tuple(found)

    def cache_key(self) -> dict[str, object]:
        """What can change the result of a test that uses this service."""
        return {
            "command": self.command,
            "probe": [self.probe.kind, self.probe.target],
            "port": "auto" if self.auto_port else self.port,
            "url": self.url,
            "env": dict(sorted(self.env.items())),
            "depends_on": sorted(self.dependencies()),
        }


@dataclass(frozen=True)
class PhaseConfig:
    """One ``[[phases]]`` entry: the tests it selects run together, before later phases."""

    name: str
    select: tuple[str, ...] = ()  # test id globs
    marker: str | None = None  # a pytest marker
    mode: str = "parallel"
    required: bool = False


def variable_prefix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know about the project. Built by :func:`load_config`."""

    root: Path
    source: Path
    server: str
    workers: int = 1
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
    test_timeout: float = 300.0
    cache_file: str = ".test-cache.json"
    results_dir: str = "test-results"
    keep_logs: int = 5
    pytest_mode: str = "session"
    pytest_args: tuple[str, ...] = ()
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

    def expand(self, command: str) -> str:
        """Substitute ``{python}`` (the interpreter running testpool) in a command."""
        return command.replace("{python}", sys.executable)

    def port(self, worker: int) -> int:
        return self.port_base + worker

    def services_for_server(self) -> tuple[str, ...]:
        """The services every worker's server needs: ``server_requires`` plus those that
        ``server`` and ``env`` name in placeholders."""
        referenced = [
            name for text in (self.server, *self.env.values())
            for name, _ in service_references(text)
        ]  # fmt: skip
        return tuple(dict.fromkeys([*self.server_requires, *referenced]))

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
        }


@dataclass(frozen=True)
class RunOptions:
    """The per-invocation choices from the command line (not part of the config file)."""

    full: bool = False
    pattern: str | None = None
    verbose: bool = False
    retries: int = 0
    max_failures: int | None = None
    fail_on_flaky: bool = False


# key -> (accepted python types, human description)
_NUMBER = (int, float)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "workers": ((int,), "an integer from 1 to 8"),
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
    "services": ((dict,), "a table of service tables ([services.NAME])"),
    "requires": ((dict,), "a table of test id globs to lists of service names"),
    "server_requires": ((list,), "a list of service names"),
    "phases": ((list,), "an array of phase tables ([[phases]])"),
}

_CONFIG_FIELDS = {f.name for f in fields(Config)} - {"root", "source"}
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
        if isinstance(value, bool) or not isinstance(value, types):
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
    if "env" in values:
        bad = [name for name, v in values["env"].items() if not isinstance(v, str)]
        if bad:
            raise ConfigError(f"{where}: 'env.{bad[0]}' must be a string")
    for key in ("health_interval", "startup_timeout", "test_timeout"):
        if key in values:
            values[key] = float(values[key])
    if "services" in values:
        values["services"] = _parse_services(values["services"], where)
    if "requires" in values:
        values["requires"] = _parse_requires(values["requires"], where)
    if "server_requires" in values:
        values["server_requires"] = _names(values["server_requires"], f"{where}: 'server_requires'")
    if "phases" in values:
        values["phases"] = _parse_phases(values["phases"], where)
    config = Config(root=root, source=source, **values)
    validate(config, where)
    return config


def validate(config: Config, where: str = "config") -> None:
    """Check value ranges and cross-key rules; also used after CLI overrides."""
    if not 1 <= config.workers <= MAX_WORKERS:
        raise ConfigError(
            f"{where}: 'workers' must be from 1 to {MAX_WORKERS}, got {config.workers}"
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
    _check_services(config, where)


# --- services, requirements and phases ---------------------------------------------------

_SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SERVICE_KEYS = ("command", "probe", "port", "url", "env", "startup_timeout", "depends_on")
_PHASE_KEYS = ("name", "select", "marker", "mode", "required")
_SERVICE_PLACEHOLDERS = ("port", "url", "data_dir", "python")
# Variables testpool itself sets for every test: no service may export one of them.
_OWN_VARIABLES = {"TEST_BASE_URL"}


def _unknown_key(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return ConfigError(f"{where}: unknown key '{key}'{suggestion}")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of service names")
    return tuple(dict.fromkeys(value))


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a positive number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where} must be a positive number of seconds")
    return float(value)


def _string(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"{where}: '{key}' must be a string, got {type(value).__name__} {value!r}"
        )
    return value


def _parse_services(table: Mapping[str, Any], where: str) -> dict[str, ServiceConfig]:
    services: dict[str, ServiceConfig] = {}
    exported: dict[str, str] = {}
    for name, raw in table.items():
        here = f"{where} [services.{name}]"
        if not _SERVICE_NAME.match(name):
            raise ConfigError(
                f"{here}: a service name starts with a letter and holds only letters, digits, "
                "'_' and '-'"
            )
        if not isinstance(raw, dict):
            raise ConfigError(f"{here}: must be a table")
        service = _parse_service(name, raw, here)
        for variable in (f"{service.variable_prefix}_PORT", f"{service.variable_prefix}_URL"):
            if variable in _OWN_VARIABLES:
                raise ConfigError(f"{here}: its variable {variable} is one testpool sets itself")
            if variable in exported:
                raise ConfigError(
                    f"{here}: exports {variable}, as service '{exported[variable]}' does: "
                    "rename one of them"
                )
            exported[variable] = name
        services[name] = service
    return services


def _parse_service(name: str, raw: Mapping[str, Any], here: str) -> ServiceConfig:
    for key in raw:
        if key not in _SERVICE_KEYS:
            raise _unknown_key(key, _SERVICE_KEYS, here)
    command = _string(raw, "command", here)
    if not command or not command.strip():
        raise ConfigError(f"{here}: 'command' is required (the command that starts the service)")
    port: int | None = None
    auto_port = False
    raw_port = raw.get("port")
    if raw_port == "auto":
        auto_port = True
    elif raw_port is not None:
        if isinstance(raw_port, bool) or not isinstance(raw_port, int):
            raise ConfigError(f"{here}: 'port' must be a port number or \"auto\", got {raw_port!r}")
        if not 1024 <= raw_port <= 65535:
            raise ConfigError(f"{here}: 'port' must be from 1024 to 65535, got {raw_port}")
        port = raw_port
    has_port = auto_port or port is not None
    env = raw.get("env", {})
    if not isinstance(env, dict):
        raise ConfigError(f"{here}: 'env' must be a table of string values")
    bad = [key for key, value in env.items() if not isinstance(value, str)]
    if bad:
        raise ConfigError(f"{here}: 'env.{bad[0]}' must be a string")
    url = _string(raw, "url", here)
    if url is None and has_port:
        url = "http://127.0.0.1:{port}"
    timeout = raw.get("startup_timeout")
    return ServiceConfig(
        name=name,
        command=command,
        probe=_parse_probe(raw.get("probe"), has_port, here),
        port=port,
        auto_port=auto_port,
        url=url,
        env=dict(env),
        startup_timeout=None
        if timeout is None
        else _seconds(timeout, f"{here}: 'startup_timeout'"),
        depends_on=_names(raw.get("depends_on", []), f"{here}: 'depends_on'"),
    )


def _parse_probe(raw: Any, has_port: bool, here: str) -> Probe:
    if raw is None:
        if not has_port:
            raise ConfigError(
                f"{here}: 'probe' is required for a service without a port "
                '(probe = { http = URL }, { tcp = "HOST:PORT" } or { process = SECONDS })'
            )
        return Probe("tcp", "127.0.0.1:{port}")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(
            f"{here}: 'probe' must be a table with one of http, tcp or process, "
            'e.g. probe = { tcp = "127.0.0.1:{port}" }'
        )
    ((kind, target),) = raw.items()
    if kind not in PROBES:
        raise _unknown_key(kind, PROBES, f"{here} probe")
    if kind == "process":
        return Probe("process", seconds=_seconds(target, f"{here}: 'probe.process'"))
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{here}: 'probe.{kind}' must be a string")
    if kind == "http" and not target.startswith(("http://", "https://")):
        raise ConfigError(f"{here}: 'probe.http' must be an http:// or https:// URL")
    if kind == "tcp" and not re.match(r"^.+:(\d+|\{[^{}]+\})$", target):
        raise ConfigError(f"{here}: 'probe.tcp' must be HOST:PORT, e.g. \"127.0.0.1:{{port}}\"")
    return Probe(kind, target)


def _parse_requires(
    table: Mapping[str, Any], where: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (glob, _names(names, f"{where}: 'requires.\"{glob}\"'")) for glob, names in table.items()
    )


def _parse_phases(items: list[Any], where: str) -> tuple[PhaseConfig, ...]:
    phases: list[PhaseConfig] = []
    for number, raw in enumerate(items, start=1):
        here = f"{where} [[phases]] #{number}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{here}: must be a table")
        for key in raw:
            if key not in _PHASE_KEYS:
                raise _unknown_key(key, _PHASE_KEYS, here)
        name = _string(raw, "name", here)
        if not name or not name.strip():
            raise ConfigError(f"{here}: 'name' is required")
        here = f"{where} phase '{name}'"
        if name == OTHER_PHASE:
            raise ConfigError(
                f"{here}: the name '{OTHER_PHASE}' is kept for the tests no phase selects"
            )
        if any(phase.name == name for phase in phases):
            raise ConfigError(f"{here}: two phases have this name")
        select = raw.get("select", [])
        if not isinstance(select, list) or not all(isinstance(g, str) for g in select):
            raise ConfigError(f"{here}: 'select' must be a list of test id globs")
        marker = _string(raw, "marker", here)
        if not select and not marker:
            raise ConfigError(f"{here}: needs 'select' (test id globs) or 'marker'")
        mode = _string(raw, "mode", here) or "parallel"
        if mode not in PHASE_MODES:
            raise ConfigError(f"{here}: 'mode' must be 'parallel' or 'sequential'")
        required = raw.get("required", False)
        if not isinstance(required, bool):
            raise ConfigError(f"{here}: 'required' must be true or false")
        phases.append(PhaseConfig(name, tuple(select), marker, mode, required))
    return tuple(phases)


def _check_services(config: Config, where: str) -> None:
    """Every service name used anywhere is a configured service, and the services'
    dependencies form no cycle."""
    services = config.services

    def check(names: Iterable[str], context: str) -> None:
        for name in names:
            if name not in services:
                raise ConfigError(
                    f"{context} names unknown service '{name}' ({known_services(services)})"
                )

    def check_references(texts: Iterable[str], context: str) -> None:
        for text in texts:
            for name, attribute in service_references(text):
                check([name], context)
                if attribute not in SERVICE_ATTRIBUTES:
                    raise ConfigError(
                        f"{context}: {{services.{name}.{attribute}}}: a service offers "
                        "{services.NAME.port} and {services.NAME.url}"
                    )
                offered = services[name].has_port if attribute == "port" else services[name].url
                if not offered:
                    raise ConfigError(f"{context}: service '{name}' has no {attribute}")

    check_references([config.server], f"{where}: 'server'")
    check_references(config.env.values(), f"{where}: 'env'")
    check(config.server_requires, f"{where}: 'server_requires'")
    for glob, names in config.requires:
        check(names, f"{where}: 'requires.\"{glob}\"'")
    for service in services.values():
        here = f"{where} [services.{service.name}]"
        check(service.depends_on, f"{here}: 'depends_on'")
        fields = [service.command, service.url or "", service.probe.target, *service.env.values()]
        check_references(fields, here)
        if not service.has_port:
            for text in fields:
                if "{port}" in text or "{url}" in text:
                    raise ConfigError(f"{here}: uses {{port}} or {{url}} but has no 'port'")
        # A URL or address is not a shell command: every placeholder in it must be one we fill.
        for key, text in (
            ("url", service.url or ""),
            (f"probe.{service.probe.kind}", service.probe.target),
        ):
            for name in names_in(text):
                if name not in _SERVICE_PLACEHOLDERS and not name.startswith("services."):
                    raise ConfigError(
                        f"{here}: '{key}' has an unknown placeholder {{{name}}} (a service's "
                        "own are {port}, {url}, {data_dir} and {python})"
                    )
    cycle = dependency_cycle(services)
    if cycle:
        raise ConfigError(
            f"{where}: services depend on each other in a cycle: {' -> '.join(cycle)}"
        )
    for phase in config.phases:
        if phase.marker and config.runner != "pytest":
            raise ConfigError(
                f"{where} phase '{phase.name}': 'marker' needs runner = 'pytest' (use 'select')"
            )


def known_services(services: Mapping[str, ServiceConfig]) -> str:
    """``known services: cache, db`` (or that there are none), for error messages."""
    if not services:
        return "no services are configured"
    return "known services: " + ", ".join(sorted(services))


def dependency_cycle(services: Mapping[str, ServiceConfig]) -> list[str]:
    """A dependency cycle among ``services`` as ``[a, b, a]``, or ``[]`` if there is none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str]:
        if name in done:
            return []
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        visiting.append(name)
        for dependency in services[name].dependencies():
            if dependency in services:
                found = visit(dependency)
                if found:
                    return found
        visiting.pop()
        done.add(name)
        return []

    for name in sorted(services):
        cycle = visit(name)
        if cycle:
            return cycle
    return []


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
