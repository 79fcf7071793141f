"""Find the tests (through the runner, or from the discovery cache) and apply ``--file``.

pytest's collection costs an interpreter start and an import of every test module; when
nothing under ``tests`` (nor pytest's configuration, nor the ``env`` table) changed since the
last collection, its result is read back from the cache file instead. (``--full`` ignores
recorded *results*, not this; delete the cache file to force a fresh collection.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from testpool.errors import NoTestsError
from testpool.runners.base import TestCase

if TYPE_CHECKING:
    from testpool.cache import CacheData
    from testpool.config import Config
    from testpool.hashing import FileHasher
    from testpool.runners.base import Runner
    from testpool.state import RunScope


def discover(
    runner: Runner, config: Config, hasher: FileHasher, data: CacheData, scope: RunScope
) -> tuple[list[TestCase], dict[str, dict[str, Any]] | None, bool]:
    """The tests, the discovery-cache update to record (None if nothing to record), and
    whether they came from the cache (no runner process was started).

    A selection (``-- ARGS``) is part of the runner's discovery key and has a slot of its
    own: the whole suite's collection stays cached beside the latest selection's."""
    key = runner.discovery_key(hasher)
    slot = f"{runner.name}:{config.tests}" + (" selection" if runner.selection else "")
    cached = data.discovery.get(slot)
    if key is not None and cached and cached.get("key") == key:
        try:
            cases = [_case(entry) for entry in cached["tests"]]
            runner.skipped_files = [(str(f), str(r)) for f, r in cached.get("skipped", [])]
            return cases, None, True
        except (KeyError, IndexError, TypeError, ValueError):
            pass  # a damaged entry: collect again
    cases = runner.discover(scope)
    if not cases:
        raise NoTestsError(f"no tests found under {config.tests}")
    if key is None:
        return cases, None, False
    update = {
        slot: {
            "key": key,
            "tests": [
                [c.id, c.file, list(c.sources), list(c.requires), list(c.markers)] for c in cases
            ],
            **(
                {"skipped": [list(s) for s in runner.skipped_files]} if runner.skipped_files else {}
            ),
        }
    }
    return cases, update, False


def _case(entry: list[Any]) -> TestCase:
    """A test from the discovery cache: ``[id, file, sources, requires, markers]``."""
    test_id, file, sources, requires, markers = entry
    if not all(isinstance(s, str) for s in (test_id, file, *sources, *requires, *markers)):
        raise TypeError("not a test")
    return TestCase(test_id, file, tuple(sources), tuple(requires), tuple(markers))


def select(cases: list[TestCase], patterns: Sequence[str]) -> list[TestCase]:
    """Tests whose id contains any of ``patterns`` (``--file``), case-insensitively. No match
    is an error (exit 5)."""
    needles = [pattern.casefold() for pattern in patterns if pattern]
    if not needles:
        return cases
    chosen = [case for case in cases if any(n in case.id.casefold() for n in needles)]
    if not chosen:
        wanted = " or ".join(f"'{pattern}'" for pattern in patterns if pattern)
        raise NoTestsError(f"no test id contains {wanted} (of {len(cases)} discovered)")
    return chosen
