"""``{name}`` placeholders in commands, URLs and environment values.

One function fills them all (:func:`fill`): each ``{name}`` whose name is in the given values
is replaced, in a single pass (a value that itself holds braces is never expanded again), and
anything else -- a shell's ``${VAR}``, a JSON snippet, a placeholder meant for a later stage --
is left as written. A stage that knows more values calls it again with them.

The shared services' placeholders are run-wide: ``{services.NAME.port}`` and
``{services.NAME.url}`` (:func:`service_values`), filled in the workers' ``server`` and ``env``
and in every service's own ``command``, ``env``, ``url`` and probe once the run has allocated
the services' ports. A service also sees its own ``{port}``, ``{url}`` and ``{data_dir}``.

Called by the configuration (to check references) and by the services and the run (to fill).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_SERVICE_REFERENCE = re.compile(r"\{services\.([^.{}]*)\.([^.{}]*)\}")
SERVICE_ATTRIBUTES = ("port", "url")


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``{name}`` that ``values`` knows replaced by its value."""
    return _PLACEHOLDER.sub(lambda match: values.get(match[1], match[0]), text)


def names_in(text: str) -> list[str]:
    """The name of every ``{name}`` placeholder in ``text``."""
    return [match[1] for match in _PLACEHOLDER.finditer(text)]


def service_references(text: str) -> list[tuple[str, str]]:
    """The ``(service, attribute)`` of every ``{services.NAME.ATTRIBUTE}`` in ``text``."""
    return [(match[1], match[2]) for match in _SERVICE_REFERENCE.finditer(text)]


def service_values(endpoints: Iterable[tuple[str, int | None, str]]) -> dict[str, str]:
    """The run-wide placeholders of the services: ``(name, port, url)`` each."""
    values: dict[str, str] = {}
    for name, port, url in endpoints:
        if port is not None:
            values[f"services.{name}.port"] = str(port)
        if url:
            values[f"services.{name}.url"] = url
    return values
