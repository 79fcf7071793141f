"""DATA_DIR handling on the real file system: symlinks are never followed, locked folders are
unlocked before removal, seeds are copied by content."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testpool.errors import ConfigError
from testpool.isolation import check_seed, make_data_dir, remove_dir, reseed_data_dir


def _as_unprivileged(folder: Path, action: Callable[[], None]) -> None:
    """Run ``action`` as a user without root's power to ignore permissions.

    As root (CI, containers) a forked child takes the ``nobody`` user and the folder is
    handed to it first; as anyone else the action runs as is.
    """
    if os.geteuid() != 0:
        action()
        return
    nobody = pwd.getpwnam("nobody")
    for current, dirs, files in os.walk(folder):
        for name in [current, *(os.path.join(current, n) for n in dirs + files)]:
            os.lchown(name, nobody.pw_uid, nobody.pw_gid)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the action failed as an unprivileged user"


@pytest.fixture
def run_folder() -> Iterator[Path]:
    # Outside pytest's own tmp folder (mode 0700, root's), so that `nobody` can reach it.
    base = Path(tempfile.mkdtemp(prefix="tp-unit-"))
    base.chmod(0o755)
    folder = base / "testpool-run"
    folder.mkdir(mode=0o755)
    yield folder
    for current, dirs, _ in os.walk(base):
        for name in dirs:
            os.chmod(os.path.join(current, name), 0o700)
    shutil.rmtree(base, ignore_errors=True)


def _locked_data_dir(run_folder: Path, seed: Path) -> Path:
    data = make_data_dir(seed, run_folder)
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "sub" / "deeper" / "file").write_text("x")
    (data / "sub" / "deeper").chmod(0o000)
    (data / "sub").chmod(0o500)
    return data


def test_remove_dir_removes_a_folder_the_test_locked(run_folder: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "a.txt").write_text("a")
    data = _locked_data_dir(run_folder, seed)
    data.chmod(0o000)

    _as_unprivileged(run_folder, lambda: remove_dir(data))

    assert not data.exists()


def test_reseed_empties_a_locked_folder_and_seeds_it_again(run_folder: Path) -> None:
    seed = run_folder.parent / "seed"
    seed.mkdir(mode=0o755)
    (seed / "a.txt").write_text("a")
    data = _locked_data_dir(run_folder, seed)
    data.chmod(0o500)

    _as_unprivileged(run_folder, lambda: reseed_data_dir(data, seed))

    assert sorted(p.name for p in data.iterdir()) == ["a.txt"]
    assert data.stat().st_mode & 0o777 == 0o700


def test_remove_dir_unlinks_a_symlink_in_place_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    link = tmp_path / "testpool-data-x"
    link.symlink_to(outside)

    remove_dir(link)

    assert not link.is_symlink() and not link.exists()
    assert (outside / "keep").read_text() == "keep"


def test_reseed_replaces_a_symlinked_data_dir_without_touching_its_target(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    data = tmp_path / "testpool-data-x"
    data.symlink_to(outside)

    reseed_data_dir(data, None)

    assert data.is_dir() and not data.is_symlink()
    assert list(data.iterdir()) == [], "no data_seed: an empty DATA_DIR"
    assert (outside / "keep").read_text() == "keep"


def test_seed_symlinks_become_copies(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("shared")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "dir-link").symlink_to(shared)
    (seed / "file-link").symlink_to(shared / "f")

    data = make_data_dir(seed, tmp_path)

    assert (
        not (data / "dir-link").is_symlink() and (data / "dir-link" / "f").read_text() == "shared"
    )
    assert not (data / "file-link").is_symlink() and (data / "file-link").read_text() == "shared"


def test_a_dangling_seed_symlink_is_named(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "gone").symlink_to(tmp_path / "nowhere")

    problem = check_seed(seed)

    assert problem is not None and "gone" in problem
    with pytest.raises(ConfigError, match="gone"):
        make_data_dir(seed, tmp_path)


def test_a_seed_symlink_loop_is_named(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "loop").symlink_to(seed)

    assert check_seed(seed) is not None


def test_without_a_seed_the_data_dir_is_empty(tmp_path: Path) -> None:
    folder = make_data_dir(None, tmp_path)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert folder.stat().st_mode & 0o777 == 0o700
