"""The bundled example (e2e/) as a new user runs it: 4 workers, everything passes, and the
console, junit.xml and report.json tell the same story."""

from __future__ import annotations

import re
import shutil
import tomllib
import xml.etree.ElementTree as ET

from support import REPO, Project


def test_example_suite_with_four_workers(project: Project) -> None:
    shutil.copytree(
        REPO / "e2e", project.root / "e2e", ignore=shutil.ignore_patterns("__pycache__")
    )
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["testpool"]
    project.config(**{**table, "port_base": project.port_base})

    result = project.run("--workers", "4")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = result.report
    assert report is not None
    tests = report["tests"]
    assert len(tests) >= 25
    assert {t["status"] for t in tests} == {"passed"}
    assert {t["worker"] for t in tests} == {0, 1, 2, 3}, "every test ran on one of the 4 workers"
    counted = re.search(r"(\d+) passed in [\d.]+s \(4 worker\(s\)\)", result.stdout)
    assert counted and int(counted.group(1)) == len(tests) == report["counts"]["passed"]
    suite = ET.parse(project.root / "test-results" / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "0")) == len(cases) == len(tests)
    assert suite.get("failures") == suite.get("errors") == "0"
    junit_ids = {
        f"{c.get('file')}::{c.get('classname', '').split('.')[-1]}::{c.get('name')}"
        for c in cases
        if c.get("classname", "").split(".")[-1].startswith("Test")
    }
    report_ids = {t["id"] for t in tests if t["id"].count("::") == 2}
    assert junit_ids == report_ids
    classes = {t["id"].split("::")[1] for t in tests if t["id"].count("::") == 2}
    assert {"TestApiScrape", "TestApiSites", "TestStats", "TestAuth", "TestDashboard"} <= classes
    project.assert_clean(result.run_id)

    again = project.run("--workers", "4")
    assert again.returncode == 0
    assert again.report is not None and again.report["workers"] == 0
    assert {t["status"] for t in again.report["tests"]} == {"cached"}
