"""Content digests of files, globs and folders (xxh3). Mtimes never count, only bytes.

One :class:`FileHasher` lives for one run and reads each file at most once, however many
tests depend on it. Called by the cache planner and the discovery cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import xxhash

# Bytecode and VCS internals never decide a test's result.
IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo")
# What editors leave beside the file being edited (vim's swap files, backups ending in "~",
# emacs's autosave and lock files, JetBrains' safe-write temporaries). They come and go while a
# file is open, so hashing them would make every test look changed (and `--watch` rerun the
# suite every few seconds while a file is being edited).
EDITOR_SUFFIXES = (".swp", ".swo", ".swx", "~", "___jb_tmp___", "___jb_old___")
MISSING = "missing"


def is_ignored_name(name: str) -> bool:
    """A file name whose content never decides a test's result (bytecode, editors' files)."""
    return (
        name.endswith(IGNORED_SUFFIXES)
        or name.endswith(EDITOR_SUFFIXES)
        or name.startswith(".#")
        or (len(name) > 1 and name.startswith("#") and name.endswith("#"))
    )


class FileHasher:
    """Digests relative to a project root, memoized per file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._memo: dict[Path, str] = {}

    def file(self, path: Path) -> str:
        """Digest of one file's content (``missing`` if it does not exist)."""
        digest = self._memo.get(path)
        if digest is None:
            try:
                with path.open("rb") as handle:
                    digest = xxhash.xxh3_64_hexdigest(handle.read())
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                digest = MISSING
            except OSError as error:  # unreadable: never equal to a digest of content
                digest = f"unreadable:{error.errno}"
            self._memo[path] = digest
        return digest

    def files(self, paths: Iterable[Path]) -> str:
        """One digest for a set of files: their root-relative names and contents."""
        combined = xxhash.xxh3_128()
        for path in sorted(set(paths)):
            combined.update(self._name(path).encode())
            combined.update(b"\0")
            combined.update(self.file(path).encode())
            combined.update(b"\n")
        return combined.hexdigest()

    def tree(self, folder: Path) -> str:
        return self.files(walk_files(folder))

    def digests(self) -> dict[Path, str]:
        """Every file this hasher has read so far, and its digest (what a plan was made from:
        ``--watch`` compares two of these to tell which files changed)."""
        return dict(self._memo)

    def _name(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def walk_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` except bytecode, VCS internals and editors' files."""
    found: list[Path] = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
        base = Path(current)
        found.extend(base / name for name in names if not is_ignored_name(name))
    return found


def expand_globs(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Files matched by root-relative globs; a matched folder stands for every file in it."""
    found: set[Path] = set()
    folders: set[Path] = set()
    for pattern in patterns:
        if Path(pattern).is_absolute():
            matches: Iterable[Path] = [Path(pattern)] if Path(pattern).exists() else []
        else:
            matches = root.glob(pattern)
        for match in matches:
            if IGNORED_DIRS.intersection(match.parts):
                continue
            if match.is_dir():
                folders.add(match)
            elif match.is_file() and not is_ignored_name(match.name):
                found.add(match)
    # "src/**" matches every sub-folder too: walk only the outermost ones.
    walked: list[Path] = []
    for folder in sorted(folders, key=lambda p: len(p.parts)):
        if not any(folder.is_relative_to(outer) for outer in walked):
            walked.append(folder)
            found.update(walk_files(folder))
    return sorted(found)


def combine(parts: Iterable[str]) -> str:
    """One digest for several digests or strings, order-sensitive."""
    combined = xxhash.xxh3_128()
    for part in parts:
        combined.update(part.encode())
        combined.update(b"\0")
    return combined.hexdigest()
