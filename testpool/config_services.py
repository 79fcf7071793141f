"""The configuration of shared services, requirements and phases: the ``[services.NAME]``,
``[requires]``, ``server_requires`` and ``[[phases]]`` parts of ``[tool.testpool]``.

Value objects (:class:`ServiceConfig`, :class:`Probe`, :class:`PhaseConfig`) and their
parsers, called by :func:`testpool.config.parse_config`; :func:`check_services` checks every
name and placeholder against the configured services once the whole configuration is known
(called by :func:`testpool.config.validate`). Every error names the table and key.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testpool.errors import ConfigError
from testpool.placeholders import SERVICE_OWN, known, service_references, used
from testpool.placeholders import check as check_placeholders

if TYPE_CHECKING:
    from testpool.config import Config

PHASE_MODES = ("parallel", "sequential")
PROBES = ("http", "tcp", "process")
# The phase of the tests that no configured phase selects (it runs last).
OTHER_PHASE = "other"


@dataclass(frozen=True)
class Probe:
    """How a service is known to be ready: ``http`` (a URL answers 200), ``tcp`` (a
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


_SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SERVICE_KEYS = ("command", "probe", "port", "url", "env", "startup_timeout", "depends_on")
_PHASE_KEYS = ("name", "select", "marker", "mode", "required")
# Variables testpool itself sets for every test: no service may export one of them.
_OWN_VARIABLES = {"TEST_BASE_URL"}


def _unknown_key(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return ConfigError(f"{where}: unknown key '{key}'{suggestion}")


def parse_names(value: Any, where: str) -> tuple[str, ...]:
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


def parse_services(table: Mapping[str, Any], where: str) -> dict[str, ServiceConfig]:
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
        depends_on=parse_names(raw.get("depends_on", []), f"{here}: 'depends_on'"),
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


def parse_requires(table: Mapping[str, Any], where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (glob, parse_names(names, f"{where}: 'requires.\"{glob}\"'"))
        for glob, names in table.items()
    )


def parse_phases(items: list[Any], where: str) -> tuple[PhaseConfig, ...]:
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


def offers(services: Mapping[str, ServiceConfig]) -> dict[str, tuple[str, ...]]:
    """What each service's placeholders can give: ``port`` and/or ``url`` (for checking)."""
    return {
        name: tuple(
            attribute
            for attribute, offered in (("port", service.has_port), ("url", bool(service.url)))
            if offered
        )
        for name, service in services.items()
    }


def check_services(config: Config, where: str) -> None:
    """Every service name used anywhere is a configured service, every placeholder in a
    service's own fields is known (:mod:`testpool.placeholders`), and the services'
    dependencies form no cycle. (The workers' keys are checked with the rest of the config.)"""
    services = config.services

    def check(names: Iterable[str], context: str) -> None:
        for name in names:
            if name not in services:
                raise ConfigError(f"{context} names unknown service '{name}' ({known(services)})")

    check(config.server_requires, f"{where}: 'server_requires'")
    for glob, names in config.requires:
        check(names, f"{where}: 'requires.\"{glob}\"'")
    offered = offers(services)
    for service in services.values():
        here = f"{where} [services.{service.name}]"
        check(service.depends_on, f"{here}: 'depends_on'")
        fields = {"command": service.command, **{f"env.{k}": v for k, v in service.env.items()}}
        if service.url:
            fields["url"] = service.url
        if service.probe.kind != "process":
            fields[f"probe.{service.probe.kind}"] = service.probe.target
        for key, text in fields.items():
            for name in ("port", "url"):
                if name in used(text) and name not in offered[service.name]:
                    raise ConfigError(f"{here}: '{key}' uses {{{name}}} but it has no '{name}'")
            if any(name == service.name for name, _ in service_references(text)):
                raise ConfigError(
                    f"{here}: '{key}' names the service itself: write {{port}} or {{url}}"
                )
            # Its own URL is made from its port, not from itself.
            own = [
                name
                for name in SERVICE_OWN
                if (name not in ("port", "url") or name in offered[service.name])
                and not (key == "url" and name == "url")
            ]
            check_placeholders(text, where=here, key=key, allowed=own, services=offered)
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
    return known(services)


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
