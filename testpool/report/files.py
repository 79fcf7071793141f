"""What a run writes into ``results_dir``: the report files CI systems read (``junit.xml`` and
``report.json``, written atomically at the end of every run, interrupted runs included) and the
logs of the last few runs (:class:`RunLogs`).

``results_dir`` may be a folder the user also keeps things in (even the project root), so
testpool deletes only what it can prove it wrote: per-run log folders carrying its marker file.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from testpool.fsutil import atomic_write, atomic_write_json
from testpool.results import PhaseResult, RunSummary, Status, TestResult
from testpool.sanitize import xml_safe as _clean

OUTPUT_IN_JUNIT = 64 * 1024


RUN_MARKER = ".testpool-run"


class RunLogs:
    """``<results_dir>/logs/<run id>/``: this run's worker logs and ``tests/`` (one per test).

    Made at the start of a run, which then deletes the oldest of testpool's earlier run
    folders so that ``keep`` remain (this one included): the logs of a flaky failure survive
    the next few runs. A folder without the marker, or a symlink, is never touched.
    """

    def __init__(self, results_dir: Path, run_id: str, keep: int) -> None:
        self.root = results_dir / "logs"
        self.folder = self.root / run_id
        self.keep = keep

    def create(self) -> None:
        (self.folder / "tests").mkdir(parents=True, exist_ok=True)
        (self.folder / RUN_MARKER).write_text(self.folder.name + "\n")
        self.prune()

    def prune(self) -> list[Path]:
        """Delete testpool's oldest run folders beyond ``keep``; return what was deleted."""
        ours = sorted(path for path in _children(self.root) if _is_run_folder(path))
        doomed = [path for path in ours[: max(0, len(ours) - self.keep)] if path != self.folder]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        return doomed


def _children(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(entry.path) for entry in entries]
    except OSError:
        return []


def _is_run_folder(path: Path) -> bool:
    """A real folder (not a symlink) holding the marker file testpool writes into each."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and stat.S_ISREG(
            os.lstat(path / RUN_MARKER).st_mode
        )
    except OSError:
        return False


JUNIT = "junit.xml"
REPORT = "report.json"
# Where a run that stopped before any test started puts its report (report.json's format).
ABORTED = "aborted-run.json"


def write_reports(summary: RunSummary, results_dir: Path) -> list[Path]:
    """Write the run's reports; returns their paths.

    A run that stopped before any test started has no test result to report: it writes
    ``aborted-run.json`` and leaves ``junit.xml``, ``report.json`` and ``report.html`` of the
    last run that ran tests as they are, rather than replace them with "N not run" that a CI
    could take for the suite's result. Any other run writes the three and removes an earlier
    ``aborted-run.json``.
    """
    from testpool.report.html import HTML, render_html

    aborted = results_dir / ABORTED
    if summary.ran_nothing:
        atomic_write_json(aborted, summary.to_dict())
        return [aborted]
    junit = results_dir / JUNIT
    report = results_dir / REPORT
    page = results_dir / HTML
    atomic_write(junit, junit_xml(summary))
    atomic_write_json(report, summary.to_dict())
    atomic_write(page, render_html(summary))
    aborted.unlink(missing_ok=True)
    return [junit, report, page]


def split_id(test_id: str) -> tuple[str, str]:
    """(classname, name) for JUnit: ``a/b.py::C::t[p]`` -> ``a.b.C``, ``t[p]``."""
    head, bracket, params = test_id.partition("[")  # parameters may contain "::"
    if "::" not in head:
        return "tests", test_id
    path, *rest = head.split("::")
    module = re.sub(r"\.(py|go)$", "", path).replace("/", ".")
    return ".".join([module, *rest[:-1]]), rest[-1] + bracket + params


def junit_xml(summary: RunSummary) -> str:
    """The JUnit document: one ``testsuite`` per phase when the run has phases (CI systems
    group and count tests by suite), else one named ``testpool``."""
    suites = ET.Element(
        "testsuites", _suite_attributes("testpool", summary.results, summary.wall_time)
    )
    groups: list[tuple[PhaseResult | None, list[TestResult]]] = [
        (phase, [r for r in summary.results if r.phase == phase.name]) for phase in summary.phases
    ]
    # Tests of no listed phase (a merged report of parts run with different configurations):
    # in a suite of their own rather than left out.
    phased = {phase.name for phase in summary.phases}
    rest = [r for r in summary.results if r.phase not in phased]
    if rest or not groups:
        groups.append((None, rest))
    host = socket.gethostname()
    for phase, results in groups:
        name, wall_time = (
            (phase.name, phase.wall_time) if phase else ("testpool", summary.wall_time)
        )
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                **_suite_attributes(_clean(name), results, wall_time),
                "timestamp": summary.started_at,
                "hostname": host,
            },
        )
        if phase is not None:
            properties = ET.SubElement(suite, "properties")
            for key, value in (
                ("mode", phase.mode),
                ("required", str(phase.required).lower()),
                ("outcome", phase.outcome),
            ):
                ET.SubElement(
                    properties, "property", {"name": f"testpool.phase.{key}", "value": value}
                )
        for result in results:
            suite.append(_testcase(result))
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _suite_attributes(name: str, results: list[TestResult], wall_time: float) -> dict[str, str]:
    counts = Counter(result.status for result in results)
    return {
        "name": name,
        "tests": str(len(results)),
        "failures": str(counts[Status.FAILED] + counts[Status.TIMEOUT]),
        "errors": str(counts[Status.ERROR]),
        "skipped": str(counts[Status.SKIPPED] + counts[Status.NOT_RUN]),
        "time": f"{wall_time:.3f}",
    }


def _testcase(result: TestResult) -> ET.Element:
    # Ids, file names and messages can hold any character, like the output: none may make the
    # document invalid (each is escaped, so two ids that differ stay different).
    classname, name = split_id(result.id)
    case = ET.Element(
        "testcase",
        {
            "classname": _clean(classname),
            "name": _clean(name),
            "file": _clean(result.file),
            "time": f"{result.duration:.3f}",
        },
    )
    properties = ET.SubElement(case, "properties")
    ET.SubElement(properties, "property", {"name": "testpool.status", "value": result.status.value})
    if result.worker is not None:
        ET.SubElement(
            properties, "property", {"name": "testpool.worker", "value": str(result.worker)}
        )
    ET.SubElement(
        properties, "property", {"name": "testpool.attempts", "value": str(len(result.attempts))}
    )
    if result.phase is not None:
        ET.SubElement(
            properties, "property", {"name": "testpool.phase", "value": _clean(result.phase)}
        )
    output = _clean(result.output[-OUTPUT_IN_JUNIT:])
    message = _clean(result.message)
    if result.status in (Status.FAILED, Status.TIMEOUT):
        element = ET.SubElement(case, "failure", {"message": message, "type": result.status.value})
        element.text = output
    elif result.status is Status.ERROR:
        element = ET.SubElement(case, "error", {"message": message, "type": "infrastructure"})
        element.text = output
    elif result.status in (Status.SKIPPED, Status.NOT_RUN):
        reason = message or result.status.value
        ET.SubElement(case, "skipped", {"message": reason})
    if output and result.status is Status.FLAKY:
        ET.SubElement(case, "system-out").text = output
    return case
