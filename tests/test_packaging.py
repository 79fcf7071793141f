"""A fresh `pip install -e .` must be enough to run the example suite (the README's quick
start), and CI must run exactly the commands the README gives."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from support import REPO

STDLIB = set(sys.stdlib_module_names)
LOCAL = {"testpool", "helpers", "jsonc", "server", "support"}
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"dotenv": "python-dotenv", "_pytest": "pytest"}  # _pytest: pytest's internals


def _imports(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - STDLIB - LOCAL - {"__future__"}


def _dependencies() -> set[str]:
    """The required dependencies, plus the optional ones testpool imports only where asked
    (``testpool[queue]``: redis, for --queue)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["queue"]]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_everything_testpool_and_the_example_suite_import_is_a_dependency() -> None:
    sources = [*(REPO / "testpool").rglob("*.py"), *(REPO / "e2e").rglob("*.py")]
    needed = {DISTRIBUTIONS.get(name, name).lower() for name in _imports(sources)}
    assert needed - _dependencies() == set(), "imported but not a dependency"


def _readme_quick_start_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_commands_verbatim() -> None:
    quick_start, own_tests = _readme_quick_start_commands()[:2]
    assert "[dev]" not in quick_start, "the quick start must work without the dev extras"
    script = (REPO / ".ci" / "run").read_text()
    # .ci/run reads both commands from the README; check it finds the same two.
    extracted = [
        subprocess.run(
            ["bash", "-c", f"cd {REPO} && source <(sed -n '/^readme_command()/,/^}}/p' .ci/run) "
             f"&& readme_command {n}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for n in (1, 2)
    ]  # fmt: skip
    assert extracted == [quick_start, own_tests]
    assert 'bash -c "$quick_start"' in script and 'bash -c "$own_tests"' in script
