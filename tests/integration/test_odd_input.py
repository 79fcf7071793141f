"""Odd but real input: ids with control characters, bytes that are not UTF-8, files that are
not what they should be. Each gets a clean result or one error line and a documented exit code,
never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
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


PASSING = "def test_a():\n    pass\n\ndef test_b():\n    pass\n"


def warnings_of(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("testpool: warning: ")]


def test_a_cache_file_that_is_not_utf8_is_a_warning_and_rewritten(project: Project) -> None:
    project.write("tests/test_a.py", PASSING)
    project.config()
    (project.root / ".test-cache.json").write_bytes(b'{"version": 1, "salt": "\xff\xfe"}')

    result = project.run()

    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == [
        "testpool: warning: cache file .test-cache.json is corrupt (not UTF-8 text); ignoring it"
    ]
    assert set(project.cache()["tests"]) == {"tests/test_a.py::test_a", "tests/test_a.py::test_b"}
    project.assert_clean(result.run_id)


def test_no_lock_file_in_the_project_and_an_old_one_does_not_matter(project: Project) -> None:
    project.write("tests/test_a.py", PASSING)
    project.config()
    # A lock file left by an older testpool, here even a folder: no longer used.
    (project.root / ".test-cache.json.lock").mkdir()

    result = project.run()

    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == []
    (project.root / ".test-cache.json.lock").rmdir()
    assert sorted(p.name for p in project.root.iterdir()) == [
        ".test-cache.json", "test-results", "testpool.toml", "tests",
    ]  # fmt: skip
    assert set(project.run().statuses.values()) == {"cached"}
    project.assert_clean(result.run_id)


def test_a_foreign_cache_file_is_named_and_left_alone(project: Project) -> None:
    project.write("tests/test_a.py", PASSING)
    project.config()
    foreign = '{"name": "another tool", "entries": [1, 2, 3]}\n'
    (project.root / ".test-cache.json").write_text(foreign)

    result = project.run()

    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == [
        "testpool: warning: cache file .test-cache.json is not a testpool cache (a JSON object "
        "without testpool's format version; its keys: entries, name); ignoring it and leaving "
        "it as it is: set cache_file to another file to cache results"
    ]
    assert (project.root / ".test-cache.json").read_text() == foreign
    project.assert_clean(result.run_id)


@pytest.fixture
def read_only_root(project: Project) -> Iterator[Path]:
    """The project folder made immutable (root ignores permission bits, not this)."""
    project.write("tests/test_a.py", PASSING)
    project.config()
    if subprocess.run(["chattr", "+i", str(project.root)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        yield project.root
    finally:
        subprocess.run(["chattr", "-i", str(project.root)], check=True)


def test_read_only_project_is_one_line_exit_2(project: Project, read_only_root: Path) -> None:
    result = project.run()
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line == (
        "testpool: error: cannot write to results_dir test-results (Operation not permitted): "
        "point results_dir at a writable folder"
    )

    listed = project.run("list")
    assert listed.returncode == 0
    assert warnings_of(listed.stderr) == [
        "testpool: warning: cannot write the cache file .test-cache.json: Operation not permitted"
    ]
    assert len(listed.listing) == 2
    project.assert_clean()


def test_a_secrets_file_that_is_not_utf8_is_one_line_exit_2(project: Project) -> None:
    project.write("tests/test_a.py", PASSING)
    project.config(secrets=["secrets.env"])
    (project.root / "secrets.env").write_bytes(b"A=1\nPASSWORD=caf\xe9\n")

    result = project.run()

    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        f"testpool: error: secrets file {project.root / 'secrets.env'} is not UTF-8 text (line 2)"
    )
    project.assert_clean()


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"pid_start": "yesterday"}, "'pid_start' must be a number, got a string"),
        ({"socket": 5}, "'socket' must name one of testpool's tmux sockets"),
        ({"processes": [{"pgid": 0, "start": 1.0}]}, "'pgid' must be a process id above 1"),
        ({"processes": [{"pgid": "12"}]}, "'pgid' must be an integer, got a string"),
        ({"ports": "9000"}, "'ports' must be a list, got a string"),
        ({"pid": True}, "'pid' must be an integer, got a boolean"),
        ("not json", "Expecting value"),
    ],
)
def test_a_damaged_run_record_is_skipped_with_a_warning(
    project: Project, record: dict[str, object] | str, problem: str
) -> None:
    project.write("tests/test_a.py", PASSING)
    project.config()
    runs = project.state / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "20260101000000-abcdef.json"
    if isinstance(record, str):
        path.write_text(record)
    else:
        # The pid of a live process (this test's): a record is only ever acted on by pid.
        base = {"run_id": "20260101000000-abcdef", "pid": os.getpid(), "pid_start": 1.0}
        path.write_text(json.dumps({**base, **record}))
    expected = f"testpool: warning: skipped the damaged run record {path} ({problem}"

    cleaned = project.run("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert [w[: len(expected)] for w in warnings_of(cleaned.stderr)] == [expected]

    result = project.run()
    assert result.returncode == 0, result.stderr
    assert [w[: len(expected)] for w in warnings_of(result.stderr)] == [expected]
    assert path.exists(), "left for the user to look at"
    path.unlink()
    project.assert_clean(result.run_id)


def test_pytest_collection_printing_non_utf8_is_fine(project: Project) -> None:
    # A plugin that prints Latin-1 once pytest's capture has ended.
    project.write(
        "tests/conftest.py",
        "import os\n\ndef pytest_unconfigure(config):\n    os.write(1, b'caf\\xe9 says bye\\n')\n",
    )
    project.write("tests/test_a.py", PASSING)
    project.config()

    listed = project.run("list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.listing) == 2
    result = project.run()
    assert result.returncode == 0, result.stderr
    project.assert_clean(result.run_id)
