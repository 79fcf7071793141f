"""Content digests: bytes count, mtimes and bytecode do not."""

from __future__ import annotations

import os
from pathlib import Path

from testpool.fsutil import atomic_write, safe_filename
from testpool.hashing import FileHasher, expand_globs


def test_content_not_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("x = 1\n")
    before = FileHasher(tmp_path).file(path)
    os.utime(path, (1, 1))
    assert FileHasher(tmp_path).file(path) == before
    path.write_text("x = 2\n")
    assert FileHasher(tmp_path).file(path) != before


def test_globs_expand_folders_and_skip_bytecode(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "m.py").write_text("1")
    (tmp_path / "src" / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_text("1")
    (tmp_path / "src" / "top.py").write_text("1")
    files = expand_globs(tmp_path, ["src/**"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["src/pkg/m.py", "src/top.py"]
    assert expand_globs(tmp_path, ["src/*.py"]) == [tmp_path / "src" / "top.py"]


def test_set_digest_sees_renames_and_additions(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    hasher = FileHasher(tmp_path)
    one = hasher.files([tmp_path / "a"])
    (tmp_path / "b").write_text("1")
    assert FileHasher(tmp_path).files([tmp_path / "a", tmp_path / "b"]) != one
    assert FileHasher(tmp_path).files([tmp_path / "b"]) != one


def test_seeded_data_dir_is_private(tmp_path: Path) -> None:
    from testpool.isolation import make_data_dir, remove_dir

    seed = tmp_path / "seed"
    seed.mkdir(mode=0o755)
    (seed / "sites.jsonc").write_text("[]")
    folder = make_data_dir(seed)
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        assert (folder / "sites.jsonc").read_text() == "[]"
    finally:
        remove_dir(folder)


def test_safe_filename_is_safe_and_unique() -> None:
    one = safe_filename("e2e/test_a.py::TestX::test_y[a/b::c]")
    two = safe_filename("e2e/test_a.py::TestX::test_y[a_b__c]")
    assert "/" not in one and ":" not in one and one != two


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write(target, "first")
    atomic_write(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
