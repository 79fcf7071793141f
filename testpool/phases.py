"""Phases: the tests of a run in ordered groups (smoke tests first, stop early if they fail).

Each ``[[phases]]`` entry selects tests by id glob (``select``) and/or pytest marker
(``marker``); a test belongs to the first phase that selects it, and the tests no phase
selects form an implicit last phase, ``other``. Phases run one after another on the same
workers; ``sequential`` runs one test at a time. When a ``required`` phase ends with a failure
the later phases do not run.

Pure: the run asks :func:`split` for the phases and :func:`failed` whether one failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from testpool.config_services import OTHER_PHASE
from testpool.results import Status

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.config_services import PhaseConfig
    from testpool.runners.base import TestCase


@dataclass(frozen=True)
class Phase:
    """One phase of a run and the ids of its tests, in discovery order."""

    name: str
    tests: tuple[str, ...]
    mode: str = "parallel"
    required: bool = False

    @property
    def sequential(self) -> bool:
        return self.mode == "sequential"


def selects(phase: PhaseConfig, case: TestCase) -> bool:
    if phase.marker is not None and phase.marker in case.markers:
        return True
    return any(fnmatchcase(case.id, glob) for glob in phase.select)


def phase_of(case: TestCase, config: Config) -> str | None:
    """The name of ``case``'s phase; None when the configuration has no phases."""
    if not config.phases:
        return None
    for phase in config.phases:
        if selects(phase, case):
            return phase.name
    return OTHER_PHASE


def split(cases: Iterable[TestCase], config: Config) -> list[Phase]:
    """The phases to run ``cases`` in, in order, without the empty ones. Without configured
    phases: one phase (``other``) holding every test."""
    members: dict[str, list[str]] = {phase.name: [] for phase in config.phases}
    members[OTHER_PHASE] = []
    for case in cases:
        members[phase_of(case, config) or OTHER_PHASE].append(case.id)
    phases = [Phase(p.name, tuple(members[p.name]), p.mode, p.required) for p in config.phases]
    phases.append(Phase(OTHER_PHASE, tuple(members[OTHER_PHASE])))
    return [phase for phase in phases if phase.tests]


def failed(
    phase: Phase, statuses: Mapping[str, Status], *, fail_on_flaky: bool = False
) -> list[str]:
    """The tests of ``phase`` whose final status counts as a failure (the run's exit code
    rules: failed, timed out, infrastructure error; flaky with ``--fail-on-flaky``)."""
    return [
        test_id
        for test_id in phase.tests
        if (status := statuses.get(test_id)) is not None
        and (status.is_failure or (fail_on_flaky and status is Status.FLAKY))
    ]
