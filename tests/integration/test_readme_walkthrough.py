"""The README's walk-through ("A worked example: a Node.js server that reads its port from an
.ini file"), run as written: `testpool init` on a copy of examples/notes, the diagnosis of the
first run, then the README's config and template, with no edit to the tests or the server."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from support import REPO, Project

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node is not installed"
)
EXAMPLE = REPO / "examples" / "notes"


def readme_block(name: str) -> str:
    """The code block right after ``<!-- walkthrough: NAME -->`` in the README."""
    text = (REPO / "README.md").read_text()
    match = re.search(
        rf"<!-- walkthrough: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, re.S
    )
    assert match, f"README has no walk-through block {name!r}"
    return match[1] + "\n"


def _copy_example(project: Project) -> None:
    shutil.copytree(
        EXAMPLE,
        project.root,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("data", "node_modules", "__pycache__", "test-results"),
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_readme_walkthrough_runs_as_written(project: Project) -> None:
    _copy_example(project)
    before = _tree(project.root)

    # 1. testpool init prints (and writes) what the README shows.
    init = project.run("init")
    shown = readme_block("init").split("\n", 1)
    assert shown[0] == "$ testpool init"
    assert init.returncode == 0, init.stderr
    assert init.stdout == shown[1]
    written = (project.root / "testpool.toml").read_text()
    assert written in shown[1]

    # 2. Its config as it is: the server listens on config.ini's port; testpool says so, early.
    with (project.root / "testpool.toml").open("a") as handle:
        handle.write(f"startup_timeout = 120\nport_base = {project.port_base}\n")
    started = time.monotonic()
    first = project.run()
    assert first.returncode == 3
    assert time.monotonic() - started < 60, "it did not wait out startup_timeout"
    expected = readme_block("first run").replace("9000", str(project.port_base))
    expected_lines = [line.strip() for line in expected.splitlines()[1:] if line.strip()]
    got_lines = [line.strip() for line in first.stderr.splitlines() if line.strip()]
    assert got_lines == expected_lines
    project.assert_clean(first.run_id)
    shutil.rmtree(project.root / "data")  # made by the dev config's server on its way up

    # 3 and 4. The README's template and config, as written (plus this test's ports).
    template = readme_block("testpool/config.ini")
    config = readme_block("testpool.toml")
    setting_lines = [line for line in config.splitlines() if line.strip()]
    assert len(setting_lines) <= 10, "the README promises a short config"
    project.write("testpool/config.ini", template)
    (project.root / "testpool.toml").write_text(config + f"port_base = {project.port_base}\n")

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == {
        "tests/e2e/test_notes.py::test_health": "passed",
        "tests/e2e/test_notes.py::test_create_then_read": "passed",
        "tests/e2e/test_notes.py::test_text_is_required": "passed",
        "tests/e2e/test_notes.py::test_delete": "passed",
        "tests/e2e/test_notes.py::test_unknown_note": "passed",
    }
    assert result.report is not None and result.report["workers"] == 4
    project.assert_clean(result.run_id)
    assert project.run().statuses == dict.fromkeys(result.statuses, "cached")

    # Nothing of the project changed but what the walk-through added.
    after = _tree(project.root)
    changed = {name for name in before if after.get(name) != before[name]}
    assert changed == {".gitignore"}, changed
    assert not (project.root / "data").exists(), "the workers kept their notes in DATA_DIR"
