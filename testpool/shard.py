"""Static shards: split a suite into N parts of about equal duration, the same on every machine.

Pure: no I/O, no clock. ``testpool --shard I/N`` calls :func:`assign` with every selected test,
the duration the cache recorded for each test that will run, and which tests the cache will
skip; machine I runs part I. Given the same test ids and the same cache file, every machine
computes the same split, so the N parts cover the suite exactly once.

- Tests with a recorded duration are packed longest first, each onto the part with the least
  work so far (ties: the lower part number) — the classic longest-processing-time rule, within
  4/3 of the best possible makespan.
- Tests without a recorded duration (new ones) are spread by count: each goes to the part with
  the fewest such tests so far, in id order.
- Tests the cache will skip cost nothing; they are spread by count as well, so that every
  test is reported by exactly one part.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from testpool.errors import ConfigError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (counting from 1) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/4"`` → part 2 of 4. Raises :class:`ConfigError` (exit 2) for anything else."""
    match = _SHARD.match(text)
    if not match:
        raise ConfigError(f"--shard must look like I/N (e.g. 2/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(f"--shard {text}: I must be from 1 to N, and N at least 1")
    return Shard(index, count)


def assign(
    tests: Iterable[str],
    count: int,
    durations: Mapping[str, float],
    skipped: Collection[str] = (),
) -> list[list[str]]:
    """Split ``tests`` into ``count`` parts (part I is ``result[I - 1]``), each in id order.

    ``durations`` holds the recorded durations (tests missing from it are "unknown");
    ``skipped`` the tests that will not run (cached).
    """
    ids = sorted(set(tests))
    timed = sorted(
        (t for t in ids if t not in skipped and t in durations),
        key=lambda t: (-durations[t], t),
    )
    unknown = [t for t in ids if t not in skipped and t not in durations]
    free = [t for t in ids if t in skipped]
    parts: list[list[str]] = [[] for _ in range(count)]
    load = [0.0] * count
    for test in timed:
        target = min(range(count), key=lambda i: (load[i], i))
        parts[target].append(test)
        load[target] += max(0.0, durations[test])
    for group in (unknown, free):
        counts = [0] * count
        for test in group:
            target = min(range(count), key=lambda i: (counts[i], i))
            parts[target].append(test)
            counts[target] += 1
    return [sorted(part) for part in parts]
