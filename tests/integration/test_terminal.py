"""testpool on a real terminal (a pseudo-terminal) and in CI, with ids and output that try to
act on the terminal: markup, escape sequences, control characters, unicode."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from support import Project

# Every kind of trouble a parametrized id can carry; 50 ids cycle through them (each first as
# it is, so that "[/health]" really is a closing markup tag, then with a number).
ODD = [
    "/health", "red", "[bold]x[/bold]", "/", "[/]", "\x1b[2J", "\x1b]0;pwned\x07", "é",
    "日本語", "🙂", ":smile:", "a::b", "$(id)", "'\"", "\\\\", "[link=file:///etc]x",
    "\x1b[?1049h", "tab\\there", "\u202eevil", "[", "]", "[[", "]]", "a/b/c", "\x1b",
]  # fmt: skip

ODD_SUITE = f"""
import time
import pytest

ODD = {ODD!r}
IDS = [ODD[n % len(ODD)] + (str(n) if n >= len(ODD) else "") for n in range(50)]

@pytest.mark.parametrize("value", IDS, ids=IDS)
def test_p(value):
    time.sleep(0.1)  # long enough for the live board to show the ids as they run
"""

# Let pytest keep control characters and unicode in ids rather than escape them.
RAW_IDS = """
[pytest]
disable_test_id_escaping_and_forfeit_all_rights_to_community_support = true
"""

NASTY_OUTPUT = """
import sys
import pytest

@pytest.mark.parametrize("value", ["[/health]\\x1b]0;pwned\\x07"], ids=lambda v: v)
def test_fails(value):
    sys.stdout.write("before\\x1b[2J\\x1b[H\\x1b[?1049h\\x1b]0;pwned\\x07\\x00after\\n")
    assert False, "boom \\x1b[31mred\\x1b[0m [/oops]"
"""
FORBIDDEN = ("\x1b[2J", "\x1b[?1049h", "\x1b]0;pwned", "\x00", "\x07")


def odd_ids() -> list[str]:
    ids = [ODD[n % len(ODD)] + (str(n) if n >= len(ODD) else "") for n in range(50)]
    return [f"tests/test_odd.py::test_p[{id_}]" for id_ in ids]


def test_odd_ids_on_a_terminal_pass_with_valid_reports(project: Project) -> None:
    project.write("tests/test_odd.py", ODD_SUITE)
    project.write("pytest.ini", RAW_IDS)
    project.config(workers=2)

    result = project.run_in_terminal()

    assert result.returncode == 0, result.stdout[-3000:]
    assert "MarkupError" not in result.stdout and "Traceback" not in result.stdout
    # The board kept drawing while the tests ran (a markup error kills its thread silently).
    assert "tests/test_odd.py::test_p[" in result.stdout
    assert result.statuses == dict.fromkeys(odd_ids(), "passed")
    assert "50 passed" in result.stdout
    for forbidden in FORBIDDEN:
        assert forbidden not in result.stdout, repr(forbidden)
    junit = ET.parse(project.root / "test-results" / "junit.xml").getroot()
    assert len(junit.findall("./testsuite/testcase")) == 50
    json.loads(
        (project.root / "test-results" / "report.json").read_text(),
        parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)),
    )
    # Cached the second time, and the list shows the ids with their escapes visible.
    again = project.run("list")
    assert again.returncode == 0
    assert "tests/test_odd.py::test_p[\\x1b]0;pwned\\x07]" in again.stdout
    assert again.stdout.count("cached ") == 50
    project.assert_clean(result.run_id)


def test_failure_summary_on_a_terminal_does_not_pass_escapes_through(project: Project) -> None:
    project.write("tests/test_bad.py", NASTY_OUTPUT)
    project.write("pytest.ini", RAW_IDS)
    project.config()

    result = project.run_in_terminal()

    assert result.returncode == 1, result.stdout[-3000:]
    for forbidden in FORBIDDEN:
        assert forbidden not in result.stdout, repr(forbidden)
    assert "tests/test_bad.py::test_fails[[/health]\\x1b]0;pwned\\x07]" in result.stdout
    assert "beforeafter" in result.stdout.replace("\\x00", "")
    assert "[/oops]" in result.stdout
    # The test's own log keeps what the test printed.
    log = next((project.root / "test-results" / "logs").glob("*/tests/*.log")).read_text()
    assert "\x1b[2J" in log
    project.assert_clean(result.run_id)


def test_ci_output_has_no_escape_codes(project: Project) -> None:
    project.write("tests/test_bad.py", NASTY_OUTPUT)
    project.write("pytest.ini", RAW_IDS)
    project.config()

    result = project.run()

    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "\x00" not in result.stdout and "\x07" not in result.stdout
    assert "FAILED   tests/test_bad.py::test_fails[[/health]\\x1b]0;pwned\\x07]" in result.stdout
    ET.parse(project.root / "test-results" / "junit.xml")
    project.assert_clean(result.run_id)


def test_the_live_board_shows_the_phase_on_a_terminal(project: Project) -> None:
    project.write(
        "tests/test_phased.py",
        """
        import time

        def test_smoke():
            time.sleep(1.5)  # long enough for the board to be drawn a few times

        def test_rest():
            pass
        """,
    )
    # A phase name that is rich markup and an escape sequence: shown as it is, never obeyed.
    name = "smoke[/b]\x1b[2J"
    project.config(
        workers=1,
        phases=[{"name": name, "select": ["*::test_smoke"], "required": True}],
    )

    result = project.run_in_terminal()

    assert result.returncode == 0, result.stdout
    # The board's header (colours removed): the phase, then the progress.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert re.search(r"phase smoke\[/b\]\\x1b\[2J \(1/2, required\)  +[01]/2 ", plain)
    assert "testpool: phase smoke[/b]\\x1b[2J (1/2, required): 1 test(s)" in result.stdout
    assert "\x1b[2J" not in result.stdout
    assert "Phases" in result.stdout and "other" in result.stdout
