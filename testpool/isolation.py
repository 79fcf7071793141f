"""Private, seeded data folders: one ``DATA_DIR`` per worker, re-seeded per test on request.

Every folder is made by ``tempfile.mkdtemp(prefix="testpool-…")``: mode 0700, an unpredictable
name, inside the run's own folder. Called by the pool (make, remove) and the runner (re-seed
between tests when ``isolation = "test"``).

A test owns its ``DATA_DIR`` and may do anything to it: replace it (or anything in it) with a
symlink to a folder of the user's, or take away its permissions. So nothing here ever follows a
symlink when it empties or removes a folder (the link goes, never what it points to), and a
folder a test made unreadable is made readable again before it is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from testpool.errors import ConfigError

TEMP_PREFIX = "testpool-"


def make_data_dir(seed: Path | None, parent: Path | None = None) -> Path:
    """A fresh ``DATA_DIR`` (inside ``parent``, the run's folder, when given), seeded from
    ``seed``, or empty without one."""
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}data-", dir=parent))
    seed_data_dir(folder, seed)
    return folder


def seed_data_dir(folder: Path, seed: Path | None) -> None:
    """Fill ``folder`` from ``seed`` (without one, it stays empty: what a server keeps in its
    data folder is its own business).

    Symlinks in the seed are copied as what they point to: a link copied as a link would let
    every worker write through to one shared target.
    """
    if seed is not None:
        try:
            shutil.copytree(seed, folder, dirs_exist_ok=True, symlinks=False)
        except shutil.Error as error:
            reason = _first_copy_error(error)
            raise ConfigError(f"data_seed {seed} cannot be copied: {reason}") from None
        folder.chmod(0o700)  # copytree copied the seed folder's own mode onto ours


def write_files(folder: Path, files: Mapping[str, str]) -> None:
    """Write rendered ``files`` (destination relative to ``folder`` -> text) into a data folder,
    replacing whatever the seed put there. Called after every seeding."""
    for dest, text in files.items():
        path = folder / dest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.is_dir():
                _remove_entry(path)
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"'files.{dest}' cannot be written into DATA_DIR: {error.strerror}"
            ) from None


def check_seed(seed: Path) -> str | None:
    """What is wrong with a seed folder (a symlink to nothing, a link loop), or None."""
    for current, dirs, names in os.walk(seed, followlinks=True):
        for name in [*dirs, *names]:
            path = Path(current) / name
            if path.is_symlink() and not path.exists():
                return f"{path} is a symlink to something that does not exist"
        if len(Path(current).relative_to(seed).parts) > 64:
            return f"{current} is nested too deep (a symlink loop?)"
    return None


def _first_copy_error(error: shutil.Error) -> str:
    details = error.args[0] if error.args else []
    if isinstance(details, list) and details:
        source, _, reason = details[0]
        return f"{source}: {reason}"
    return str(error)


def reseed_data_dir(folder: Path, seed: Path | None) -> None:
    """Empty ``folder`` (keeping its path, which the server knows) and re-seed it.

    If the test replaced the folder itself with a symlink or a file, that is removed and a
    new folder made in its place; what a symlink pointed to is never touched.
    """
    if _is_real_dir(folder):
        _make_removable(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                _remove_entry(Path(entry.path))
        folder.chmod(0o700)
    else:
        _remove_entry(folder)
        folder.mkdir(mode=0o700)
    seed_data_dir(folder, seed)


def remove_dir(folder: Path) -> None:
    """Remove one of our temp folders; refuses anything not named like ours.

    A symlink in its place is unlinked (never followed); a folder with its permissions taken
    away is made removable first. Missing is fine.
    """
    if not folder.name.startswith(TEMP_PREFIX):
        raise ValueError(f"refusing to remove {folder}: not a testpool folder")
    try:
        _remove_entry(folder)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # not ours to fix (another user's files): leave it rather than crash a cleanup


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove_entry(path: Path) -> None:
    """Remove a file, a symlink (not its target) or a whole folder tree."""
    if not _is_real_dir(path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    try:
        shutil.rmtree(path)  # never follows symlinks inside the tree
    except PermissionError:
        _make_removable(path)
        shutil.rmtree(path)


def _make_removable(top: Path) -> None:
    """Give back the owner's rwx on every real folder under ``top`` (and ``top``) that a test
    locked, top-down, so its entries can be listed and removed. Symlinks are not followed."""
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            mode = os.lstat(folder).st_mode
            if not stat.S_ISDIR(mode):
                continue
            if mode & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IRWXU)
            with os.scandir(folder) as entries:
                pending.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
