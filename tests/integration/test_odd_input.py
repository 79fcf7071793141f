"""Odd but real input: ids with control characters, bytes that are not UTF-8, files that are
not what they should be. Each gets a clean result or one error line and a documented exit code,
never a traceback."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from support import Project


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("testpool: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def command_project(project: Project, printed: bytes) -> None:
    """A command-runner project whose discover command prints exactly ``printed``."""
    (project.root / "ids.bin").write_bytes(printed)
    project.write("tests/README", "ids come from ids.bin\n")
    project.config(runner="command", discover="cat ids.bin", run="true {id}")


def test_command_ids_are_split_on_line_feeds_only(project: Project) -> None:
    # str.splitlines() would also split at \v, \f, \x1c, NEL (U+0085) and U+2028.
    command_project(project, "a\x0bb\n  c\x0cd \r\n\ne\x1cf\x85g\u2028h\ntab\x1bh\n".encode())

    listed = project.run("list")
    assert listed.returncode == 0, listed.stderr
    assert list(listed.listing) == ["a\\x0bb", "c\\x0cd", "e\\x1cf\\x85g\u2028h", "tab\\x1bh"]

    result = project.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == dict.fromkeys(
        ["a\x0bb", "c\x0cd", "e\x1cf\x85g\u2028h", "tab\x1bh"], "passed"
    )
    names = [
        c.get("name") for c in ET.parse(project.root / "test-results/junit.xml").iter("testcase")
    ]
    assert names == ["a\\x0bb", "c\\x0cd", "e\\x1cf\x85g\u2028h", "tab\\x1bh"]
    project.assert_clean(result.run_id)


def test_an_id_with_nul_is_one_error_line(project: Project) -> None:
    command_project(project, b"good\nbad\x00id\n")
    for command in ((), ("list",)):
        result = project.run(*command)
        assert result.returncode == 1
        line = one_error_line(result.stderr)
        assert "the discover command printed a NUL character (line 2)" in line
    project.assert_clean()


def test_discover_printing_non_utf8_is_one_error_line(project: Project) -> None:
    command_project(project, b"good\ncaf\xe9\n")
    result = project.run("list")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "the discover command printed bytes that are not UTF-8 (line 2)" in line
