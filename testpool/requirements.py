"""Which shared services each test needs, and which of them a run starts, in what order.

A test's requirements are what it declares -- ``@pytest.mark.requires("db")``, a Go comment
``// testpool:requires db`` above the function (:attr:`TestCase.requires`, from discovery) --
plus the services of every ``[requires]`` glob its id matches. Every test also depends on the
services the workers' server needs (``server_requires`` and the services its ``server`` and
``env`` name in placeholders), and a service on its ``depends_on`` (and the services its own
placeholders name).

Pure functions of the configuration and the tests. Called by the CLI pipeline (resolve, and
the cache key) and the run (which services to start).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from testpool.config_services import known_services
from testpool.errors import ConfigError
from testpool.hashing import combine
from testpool.sanitize import inline

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.config_services import ServiceConfig
    from testpool.runners.base import TestCase


def resolve(cases: Iterable[TestCase], config: Config) -> list[TestCase]:
    """``cases`` with their full requirements: declared plus the ``requires`` table's.

    A test that names a service the configuration does not define is a configuration error
    (exit 2) naming the test and listing the known services.
    """
    resolved = []
    for case in cases:
        names = list(case.requires)
        for glob, services in config.requires:
            if fnmatchcase(case.id, glob):
                names += services
        unique = tuple(dict.fromkeys(names))
        unknown = [name for name in unique if name not in config.services]
        if unknown:
            raise ConfigError(
                f"test {inline(case.id)} requires unknown service '{unknown[0]}' "
                f"({known_services(config.services)})"
            )
        resolved.append(
            case if unique == case.requires else dataclasses.replace(case, requires=unique)
        )
    return resolved


def closure(names: Iterable[str], services: Mapping[str, ServiceConfig]) -> list[str]:
    """``names`` and everything they depend on, each after its dependencies (the order to
    start them in; reversed, the order to stop them in). Ties keep the configuration's order."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dependency in services[name].dependencies():
            visit(dependency)
        order.append(name)

    wanted = set(names)
    for name in services:  # configuration order, not the order tests happened to name them
        if name in wanted:
            visit(name)
    return order


def needed(cases: Iterable[TestCase], config: Config) -> list[str]:
    """The services a run of ``cases`` starts: what they and the workers' server need, with
    their dependencies; none when ``cases`` is empty (a fully cached run starts nothing)."""
    cases = list(cases)
    if not cases:
        return []
    names = {name for case in cases for name in case.requires}
    return closure(names | set(config.services_for_server()), config.services)


def service_digests(config: Config) -> dict[str, str]:
    """Per service: a digest of its configuration and, recursively, its dependencies'. A
    change to a service reruns the tests that use it (and only those)."""
    digests: dict[str, str] = {}
    for name in closure(config.services, config.services):
        service = config.services[name]
        parts = [json.dumps(service.cache_key(), sort_keys=True)]
        parts += [digests[dependency] for dependency in service.dependencies()]
        digests[name] = combine(parts)
    return digests


def cache_component(
    case: TestCase, server_services: Sequence[str], digests: Mapping[str, str]
) -> str | None:
    """The ``services`` input of ``case``'s cache key: what it requires and the configuration
    of those services. None for a test that uses no service, so that adding services to a
    project leaves the cache entries of the tests that do not use them valid."""
    used = sorted({*case.requires, *server_services})
    if not used:
        return None
    document = {"requires": sorted(case.requires), "services": {n: digests[n] for n in used}}
    return combine([json.dumps(document, sort_keys=True)])
