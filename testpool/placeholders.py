"""Placeholders in the configuration: ``{port}``, ``{base_url}``, ``{data_dir}`` and friends,
and the shared services' ``{services.NAME.port}`` and ``{services.NAME.url}``.

A project adopts testpool without glue when the config can say where the worker's values go:
``server = "node app.js --port {port}"``, ``env = { SERVER_URL = "{base_url}/v1" }``, a
``files`` template holding ``port = {port}``. The syntax, the same in every key and template:

- ``{name}`` is a placeholder (``name``: letters, digits, ``_``); an unknown name is a
  configuration error naming the key, never silently kept;
- ``{services.NAME.port}`` and ``{services.NAME.url}`` name a shared service's port and URL;
  a service that is not configured is a configuration error listing the known ones;
- ``{{name}}`` is the literal text ``{name}``;
- every other brace is kept as written: ``${HOME}`` (the shell's), ``{"a": 1}`` (JSON),
  ``awk '{ print $1 }'`` and ``{{ .Name }}`` (Go templates) need no escaping.

The values of one worker are known only once it exists; outside a worker (pytest collecting,
the ``discover`` command, Go compiling) the per-worker names get the stand-ins of
:mod:`testpool.workerenv`, which cannot reach anything. The services' values are run-wide:
known once the run has chosen the services' ports, before any worker or service starts, and
filled together with the worker's in ``server``, ``env``, ``health_path`` and the ``files``
templates. A service's own ``command``, ``env``, ``url`` and probe know its own ``{port}``,
``{url}`` and ``{data_dir}``, ``{python}``, ``{bin}``, ``{run_id}`` and the other services'.

One function fills them all (:func:`render`), in one pass: a value is never expanded again.

Called by the config (checking), the pool (server, env, health path, files per worker), the
services (their own fields) and the runners (``discover``, ``run``).
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
import sysconfig
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from testpool.errors import ConfigError
from testpool.workerenv import COLLECTION_MARK, STAND_INS

RUN_WIDE = ("python", "bin", "run_id")
PER_WORKER = ("port", "base_url", "data_dir", "worker")
EVERYWHERE = (*RUN_WIDE, *PER_WORKER)
# A service's own fields: its own port, URL and data folder, and the run-wide values.
SERVICE_OWN = ("port", "url", "data_dir", *RUN_WIDE)
SERVICE_ATTRIBUTES = ("port", "url")
_SERVICES = "services."

# A name: `port`, or a service reference `services.db.port` (checked, see check()).
_NAME = r"[A-Za-z_][A-Za-z0-9_]*|services\.[^{}\s]*"
# `{{name}}` (escaped) or `{name}`; a `{` right after `$` is the shell's `${VAR}`.
_TOKEN = re.compile(r"\{\{(" + _NAME + r")\}\}|(?<!\$)\{(" + _NAME + r")\}")


def used(template: str) -> list[str]:
    """The placeholder names ``template`` uses, in order (escaped ones excluded)."""
    return [match[2] for match in _TOKEN.finditer(template) if match[2]]


def uses_worker(template: str) -> bool:
    """Does ``template`` need a worker's values (``{port}``, ``{data_dir}``, …)?"""
    return any(name in PER_WORKER for name in used(template))


def service_references(text: str) -> list[tuple[str, str]]:
    """The ``(service, attribute)`` of every ``{services.NAME.ATTRIBUTE}`` in ``text``."""
    found = []
    for name in used(text):
        if name.startswith(_SERVICES):
            service, _, attribute = name.removeprefix(_SERVICES).partition(".")
            found.append((service, attribute))
    return found


def check(
    template: str,
    *,
    where: str,
    key: str,
    allowed: Collection[str] = EVERYWHERE,
    source: str | None = None,
    services: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Raise :class:`ConfigError` naming ``key`` for the first placeholder not in ``allowed``.

    ``source``: the template file ``template`` was read from (named, with the line).
    ``services``: the configured services and what each offers (``port``, ``url``), where a
    key may name them; None where the services' placeholders are not known."""
    for match in _TOKEN.finditer(template):
        name = match[2]
        if not name or name in allowed:
            continue
        line = template.count("\n", 0, match.start()) + 1
        at = f" ({source}, line {line})" if source else ""
        if name.startswith(_SERVICES) and services is not None:
            _check_service(name, services, f"{where}: '{key}'{at}")
            continue
        if name in EVERYWHERE or name in ("id", "args", "url") or name.startswith(_SERVICES):
            why = _not_here(name, key)
        else:
            close = difflib.get_close_matches(name.lower(), [*allowed], n=1)
            hint = f"did you mean {{{close[0]}}}? " if close else ""
            known = ", ".join(f"{{{n}}}" for n in allowed)
            why = f"{hint}known here: {known}"
        raise ConfigError(
            f"{where}: unknown placeholder {{{name}}} in '{key}'{at}: {why}; "
            f"write {{{{{name}}}}} for the text {{{name}}}"
        )


def _check_service(name: str, services: Mapping[str, Collection[str]], context: str) -> None:
    service, _, attribute = name.removeprefix(_SERVICES).partition(".")
    if service not in services:
        raise ConfigError(f"{context} names unknown service '{service}' ({known(services)})")
    if attribute not in SERVICE_ATTRIBUTES:
        raise ConfigError(
            f"{context}: {{{name}}}: a service offers {{services.NAME.port}} and "
            "{services.NAME.url}"
        )
    if attribute not in services[service]:
        raise ConfigError(f"{context}: service '{service}' has no {attribute}")


def known(services: Collection[str]) -> str:
    """``known services: cache, db`` (or that there are none), for error messages."""
    if not services:
        return "no services are configured"
    return "known services: " + ", ".join(sorted(services))


def _not_here(name: str, key: str) -> str:
    if name == "id":
        return "{id} is only known in 'run'"
    if name == "args":
        return "{args} is only known in 'discover'"
    if name == "url":
        return "{url} is a service's own URL, known in its command, env and probe"
    if name.startswith(_SERVICES):
        return (
            f"the services' placeholders are not known in '{key}' (they are in server, env, "
            "health_path, the files templates and the services' own fields)"
        )
    return f"{{{name}}} is not known in '{key}': it runs before any worker exists"


def render(
    template: str,
    values: Mapping[str, str],
    *,
    shell: bool = False,
    verbatim: Collection[str] = (),
) -> str:
    """``template`` with its placeholders filled in, in one pass (a value is never expanded
    again). With ``shell``, a value the shell would split or interpret is quoted
    (``shlex.quote``; a plain path or URL is inserted as it is), except the names in
    ``verbatim`` (already shell text). Names must have been checked (:func:`check`); one
    missing from ``values`` is a bug, not a user error."""

    def fill(match: re.Match[str]) -> str:
        if match[1]:
            return "{" + match[1] + "}"
        value = values[match[2]]
        return shlex.quote(value) if shell and match[2] not in verbatim else value

    return _TOKEN.sub(fill, template)


def render_env(env: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    return {name: render(value, values) for name, value in env.items()}


def scripts_folder() -> str:
    """``{bin}``: where the running interpreter's scripts live (a venv's ``bin``)."""
    return sysconfig.get_path("scripts") or str(Path(sys.executable).parent)


def run_values(run_id: str) -> dict[str, str]:
    """The values every worker shares."""
    return {"python": sys.executable, "bin": scripts_folder(), "run_id": run_id}


def worker_values(run_id: str, index: int, port: int, data_dir: Path) -> dict[str, str]:
    """Worker ``index``'s values."""
    return {
        **run_values(run_id),
        "port": str(port),
        "base_url": f"http://127.0.0.1:{port}",
        "data_dir": str(data_dir),
        "worker": str(index),
    }


def collection_values(run_id: str, services: Iterable[str] = ()) -> dict[str, str]:
    """The values code sees before any worker exists: stand-ins that cannot reach anything
    (the same as the stand-in variables of :mod:`testpool.workerenv`), for the services'
    placeholders too (``services``: the configured names) before the run has chosen ports."""
    return {
        **run_values(run_id),
        "port": STAND_INS["PORT"],
        "base_url": STAND_INS["TEST_BASE_URL"],
        "data_dir": STAND_INS["DATA_DIR"],
        "worker": COLLECTION_MARK,
        **service_values((name, 0, STAND_INS["TEST_BASE_URL"]) for name in services),
    }


def service_values(endpoints: Iterable[tuple[str, int | None, str]]) -> dict[str, str]:
    """The run-wide placeholders of the services: ``(name, port, url)`` each."""
    values: dict[str, str] = {}
    for name, port, url in endpoints:
        if port is not None:
            values[f"{_SERVICES}{name}.port"] = str(port)
        if url:
            values[f"{_SERVICES}{name}.url"] = url
    return values
