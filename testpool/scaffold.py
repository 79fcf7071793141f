"""``testpool init``: look at a project and write a first configuration for it.

What is detected, in order:

- the tests folder: the first of ``e2e``, ``tests/e2e``, ``test/e2e``, ``tests``, ``test``,
  ``spec``, ``__tests__`` that holds test files;
- the runner, from those files: ``test_*.py``/``*_test.py`` → pytest, ``*_test.go`` → go,
  ``*.test.js``/``*.spec.ts``… → the command runner, with ``discover`` listing the test files and
  ``run`` running one with the project's test tool (from ``package.json``);
- the server command: a ``Procfile``'s ``web`` line, ``package.json``'s ``dev``/``start``/``serve``
  script, Django's ``manage.py``, a Go ``cmd/<name>`` or ``main.go``, a Python ``app.py``/
  ``server.py``/``main.py``;
- the health path: the health-like route (``/health``, ``/healthz``, ``/api/health``, ``/ping``…)
  the project's code names most, else ``/``;
- ``inputs``: the server's usual source folders and manifests that exist.

The table goes at the end of ``pyproject.toml`` (whose bytes are otherwise kept as they were),
or into a new ``testpool.toml`` where there is no ``pyproject.toml``; an existing configuration is
never overwritten. ``.gitignore`` gets the lines for what testpool writes. Called by the CLI.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testpool.errors import ConfigError
from testpool.fsutil import atomic_write
from testpool.sources import detect_inputs

TEST_FOLDERS = ("e2e", "tests/e2e", "test/e2e", "tests", "test", "spec", "__tests__")
SKIPPED_DIRS = frozenset(
    {".git", ".hg", "node_modules", ".venv", "venv", "vendor", "dist", "build", "target",
     "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "test-results", ".tox"}
)  # fmt: skip
SOURCE_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts", ".go", ".rb", ".java", ".kt", ".rs", ".php")
HEALTH_ROUTES = (
    "/health", "/healthz", "/api/health", "/healthcheck", "/_health", "/livez", "/readyz",
    "/ready", "/ping", "/status", "/api/status",
)  # fmt: skip
_ALTERNATIVES = "|".join(re.escape(route) for route in HEALTH_ROUTES)
_ROUTE = re.compile(rf"""["'`]({_ALTERNATIVES})["'`?]""")
MAX_SCANNED_FILES = 3000
MAX_SCANNED_BYTES = 1 << 20
GITIGNORE_LINES = ("/test-results/", "/.test-cache.json")
JS_TEST = re.compile(r"\.(test|spec)\.(js|mjs|cjs|jsx|ts|mts|cts|tsx)$")
# package.json dependency -> how to run one test file with it
JS_TOOLS = (
    ("@playwright/test", "npx playwright test {id}"),
    ("vitest", "npx vitest run {id}"),
    ("jest", "npx jest {id}"),
    ("mocha", "npx mocha {id}"),
    ("ava", "npx ava {id}"),
)


@dataclass
class Detected:
    """What ``init`` found, and how it decided (``notes``, shown to the user)."""

    tests: str
    runner: str
    server: str | None = None
    health_path: str = "/health"
    discover: str | None = None
    run: str | None = None
    inputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    launches: str = ""  # what the server command runs in the end (an npm script's command)

    def table(self) -> str:
        """The configuration as TOML lines (the body of ``[tool.testpool]``)."""
        lines = []
        if self.server is None:
            lines.append('# server = "..."  # the command that starts your dev server on $PORT')
        else:
            lines.append(f"server = {_string(self.server)}")
        lines.append(f"tests = {_string(self.tests)}")
        if self.runner != "pytest":
            lines.append(f"runner = {_string(self.runner)}")
        if self.discover is not None and self.run is not None:
            lines.append(f"discover = {_string(self.discover)}")
            lines.append(f"run = {_string(self.run)}")
        if self.health_path != "/health":
            lines.append(f"health_path = {_string(self.health_path)}")
        if self.inputs:
            lines.append("inputs = [" + ", ".join(_string(i) for i in self.inputs) + "]")
        return "\n".join(lines) + "\n"


def _string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def detect(root: Path) -> Detected:
    """Everything ``init`` can tell about the project at ``root``. Raises :class:`ConfigError`
    when there is no test to run."""
    for candidate in TEST_FOLDERS:
        folder = root / candidate
        if folder.is_dir():
            kinds = Counter(_kind(path.name) for path in _files(folder))
            kinds.pop(None, None)
            if kinds:
                break
    else:
        raise ConfigError(
            "testpool init: found no test files (test_*.py, *_test.go, *.test.js, *.spec.ts, …) "
            f"in {', '.join(TEST_FOLDERS)}: write the configuration by hand (see the README)"
        )
    kind = "python" if kinds["python"] else str(kinds.most_common(1)[0][0])
    runner = {"python": "pytest", "go": "go", "js": "command"}[kind]
    detected = Detected(tests=candidate, runner=runner)
    detected.notes.append(f"tests: {candidate}/ holds {_describe(kinds)}: runner {runner}")
    package = _package_json(root)
    if runner == "command":
        _js_runner(detected, package, candidate)
    _server(detected, root, package)
    _health(detected, root)
    detected.inputs = detect_inputs(root, candidate, f"{detected.server or ''} {detected.launches}")
    return detected


def _kind(name: str) -> str | None:
    if name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")):
        return "python"
    if name.endswith("_test.go"):
        return "go"
    if JS_TEST.search(name):
        return "js"
    return None


def _describe(kinds: Counter[str | None]) -> str:
    names = {"python": "Python tests", "go": "Go tests", "js": "JavaScript/TypeScript tests"}
    return ", ".join(f"{count} file(s) of {names[str(kind)]}" for kind, count in kinds.items())


def _files(folder: Path) -> Iterator[Path]:
    """Files under ``folder``, skipping dependencies, builds and VCS folders."""
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            yield Path(current) / name


def _package_json(root: Path) -> dict[str, object]:
    try:
        document = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _scripts(package: dict[str, object]) -> dict[str, str]:
    scripts = package.get("scripts")
    if not isinstance(scripts, dict):
        return {}
    return {str(k): str(v) for k, v in scripts.items()}


def _js_runner(detected: Detected, package: dict[str, object], tests: str) -> None:
    dependencies: dict[str, object] = {}
    for key in ("dependencies", "devDependencies"):
        value = package.get(key)
        if isinstance(value, dict):
            dependencies.update(value)
    run = "node --test {id}"
    for name, command in JS_TOOLS:
        if name in dependencies:
            run = command
            break
    detected.discover = (
        f"find {tests} -type f \\( -name '*.test.*' -o -name '*.spec.*' \\) "
        "-not -path '*/node_modules/*' | sort"
    )
    detected.run = run
    detected.notes.append(f"each test file is one test, run with: {run}")


def _server(detected: Detected, root: Path, package: dict[str, object]) -> None:
    procfile = root / "Procfile"
    if procfile.is_file():
        for line in procfile.read_text(errors="replace").splitlines():
            if line.startswith("web:"):
                detected.server = line.removeprefix("web:").strip()
                detected.notes.append("server: the Procfile's web process")
                return
    scripts = _scripts(package)
    for script in ("dev", "start", "serve"):
        if script in scripts:
            detected.server = "npm start" if script == "start" else f"npm run {script}"
            detected.launches = scripts[script]
            detected.notes.append(f"server: package.json's {script!r} script ({scripts[script]})")
            return
    if (root / "manage.py").is_file():
        detected.server = "{python} manage.py runserver 127.0.0.1:{port}"
        detected.notes.append("server: Django's manage.py runserver")
        return
    commands = sorted(p.parent.name for p in root.glob("cmd/*/main.go"))
    if commands:
        preferred = [c for c in commands if re.search("serve|dev|api|web", c)] or commands
        detected.server = f"go run ./cmd/{preferred[0]}"
        detected.notes.append(f"server: the Go command cmd/{preferred[0]}")
        return
    if (root / "main.go").is_file():
        detected.server = "go run ."
        detected.notes.append("server: the Go program main.go")
        return
    for name in ("app.py", "server.py", "main.py", "wsgi.py", "asgi.py"):
        if (root / name).is_file():
            detected.server = f"{{python}} {name}"
            detected.notes.append(f"server: {name}")
            return
    detected.notes.append("server: not found: set `server` to the command that starts it")


def _health(detected: Detected, root: Path) -> None:
    """The health route the server's code names most; the tests' code only if it names none
    (a test's path may be relative to a base URL that has a prefix)."""
    tests = root / detected.tests
    in_code: Counter[str] = Counter()
    in_tests: Counter[str] = Counter()
    for index, path in enumerate(_files(root)):
        if index >= MAX_SCANNED_FILES:
            break
        if not path.name.endswith(SOURCE_SUFFIXES):
            continue
        try:
            if path.stat().st_size > MAX_SCANNED_BYTES:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found = in_tests if path.is_relative_to(tests) else in_code
        found.update(match[1] for match in _ROUTE.finditer(text))
    for found, where in ((in_code, "the code"), (in_tests, "the tests")):
        if found:
            best = max(found, key=lambda route: (found[route], -HEALTH_ROUTES.index(route)))
            detected.health_path = best
            detected.notes.append(f"health_path: {best} (named {found[best]} time(s) in {where})")
            return
    detected.health_path = "/"
    detected.notes.append("health_path: no health route found in the code: using /")


# --- writing ----------------------------------------------------------------------------------


def write_config(root: Path, detected: Detected) -> Path:
    """Add ``[tool.testpool]`` to ``pyproject.toml``, or write ``testpool.toml``. Never
    overwrites a configuration (:class:`ConfigError`, exit 2)."""
    own = root / "testpool.toml"
    if own.exists():
        raise ConfigError(f"testpool init: {own.name} already exists: edit it, or remove it first")
    pyproject = root / "pyproject.toml"
    table = detected.table()
    if not pyproject.is_file():
        atomic_write(own, table)
        return own
    original = pyproject.read_bytes()
    current = _parse(original, pyproject)
    tool = current.get("tool", {})
    if isinstance(tool, dict) and "testpool" in tool:
        raise ConfigError(
            f"testpool init: {pyproject.name} already has [tool.testpool]: edit it, or remove "
            "it first"
        )
    separator = b"" if not original or original.endswith(b"\n") else b"\n"
    updated = original + separator + b"\n[tool.testpool]\n" + table.encode()
    try:
        written = tomllib.loads(updated.decode("utf-8")).get("tool", {})
    except tomllib.TOMLDecodeError:
        written = {}
    if not isinstance(written, dict) or "testpool" not in written:
        raise ConfigError(
            f"testpool init: [tool.testpool] cannot be added at the end of {pyproject.name} "
            "(its [tool] table is written inline): add the table by hand"
        )
    atomic_write(pyproject, updated, mode=pyproject.stat().st_mode & 0o7777)
    return pyproject


def _parse(data: bytes, path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"testpool init: {path.name} is not valid TOML ({error}): fix it first"
        ) from None


def update_gitignore(root: Path) -> list[str]:
    """Add the lines that keep testpool's reports and cache out of git; returns those added."""
    path = root / ".gitignore"
    original = path.read_bytes() if path.is_file() else b""
    present = {
        line.strip().strip("/")
        for line in original.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = [line for line in GITIGNORE_LINES if line.strip("/") not in present]
    if missing:
        separator = b"" if not original or original.endswith(b"\n") else b"\n"
        text = "# testpool's reports and result cache\n" + "\n".join(missing) + "\n"
        mode = path.stat().st_mode & 0o7777 if original else 0o644
        atomic_write(path, original + separator + text.encode(), mode=mode)
    return missing
