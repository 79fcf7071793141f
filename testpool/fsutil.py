"""Small file-system helpers shared by the cache, the reports and the run records."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import xxhash


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new, never half.

    Temp file in the same folder, fsync (unless ``durable`` is False), ``os.replace``. Used for
    the cache, reports and run records; a crash mid-write leaves the previous version intact.
    """
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def atomic_write_json(
    path: Path, document: Any, *, mode: int = 0o644, durable: bool = True
) -> None:
    atomic_write(path, json.dumps(document, indent=2) + "\n", mode=mode, durable=durable)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(test_id: str, *, limit: int = 120) -> str:
    """A file name for a test id: readable, unique, and safe on any file system."""
    readable = _UNSAFE.sub("_", test_id).strip("._")[:limit] or "test"
    return f"{readable}-{xxhash.xxh3_64_hexdigest(test_id.encode())[:8]}"


def display_path(path: Path, root: Path) -> str:
    """``path`` as a user sees it: relative to the project root when it is inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``."""
    parts = text.rstrip("\n").splitlines()
    return "\n".join(parts[-lines:])
