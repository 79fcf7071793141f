"""Where a project's server sources usually are: the default ``inputs``, and what
``testpool init`` writes. Pure apart from looking at which files and folders exist."""

from __future__ import annotations

from pathlib import Path

SOURCE_GLOBS = ("src", "lib", "app", "server", "cmd", "internal", "pkg", "api")
MANIFESTS = (
    "package.json", "package-lock.json", "go.mod", "go.sum", "requirements.txt", "Pipfile.lock",
    "poetry.lock", "uv.lock", "Gemfile.lock",
)  # fmt: skip


def detect_inputs(root: Path, tests: str, command: str) -> list[str]:
    """The usual source folders and manifests that exist under ``root`` (not the tests'
    top folder), and the files ``command`` names at the root (the server's own script)."""
    inputs = []
    parts = Path(tests).parts
    test_top = parts[0] if parts else ""
    for name in SOURCE_GLOBS:
        if (root / name).is_dir() and name != test_top:
            inputs.append(f"{name}/**")
    for name in MANIFESTS:
        if (root / name).is_file():
            inputs.append(name)
    for word in command.split():
        if "/" not in word and word not in inputs and (root / word).is_file():
            inputs.append(word)  # the server's own script (server.js, app.py)
    return inputs
