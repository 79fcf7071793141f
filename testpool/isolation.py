"""Private, seeded data folders: one ``DATA_DIR`` per worker, re-seeded per test on request.

Every folder is made by ``tempfile.mkdtemp(prefix="testpool-")``: mode 0700, an unpredictable
name, in ``$TMPDIR``. Called by the pool (make, remove) and the runner (re-seed between tests
when ``isolation = "test"``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

TEMP_PREFIX = "testpool-"
DEFAULT_FILES = {"sites.jsonc": "[]\n", "stats.json": "{}\n"}


def make_data_dir(seed: Path | None) -> Path:
    """A fresh, seeded ``DATA_DIR``."""
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    seed_data_dir(folder, seed)
    return folder


def make_private_dir(label: str) -> Path:
    """A 0700 scratch folder for the run itself (log pipes, result files, test binaries)."""
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{label}-"))


def seed_data_dir(folder: Path, seed: Path | None) -> None:
    """Fill ``folder`` from ``seed``, or with the default empty data files."""
    if seed is not None:
        shutil.copytree(seed, folder, dirs_exist_ok=True, symlinks=True)
        folder.chmod(0o700)  # copytree copied the seed folder's own mode onto ours
        return
    for name, content in DEFAULT_FILES.items():
        (folder / name).write_text(content)


def reseed_data_dir(folder: Path, seed: Path | None) -> None:
    """Empty ``folder`` (keeping the folder itself, whose path the server knows) and re-seed it."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    seed_data_dir(folder, seed)


def remove_dir(folder: Path) -> None:
    """Remove one of our temp folders; refuses anything not named like ours."""
    if not folder.name.startswith(TEMP_PREFIX):
        raise ValueError(f"refusing to remove {folder}: not a testpool folder")
    shutil.rmtree(folder, ignore_errors=True)
