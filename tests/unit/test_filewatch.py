"""The --watch file watcher: the debounce (pure, a fake clock), which folders are watched, and
real inotify events on real files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from testpool.config import parse_config
from testpool.filewatch import Batch, Debouncer, FileWatcher, WatchSpec, _glob_base, watch_spec


def test_debounce_waits_for_quiet_but_not_forever() -> None:
    debouncer = Debouncer(quiet=0.01, longest=0.3)
    assert debouncer.wait(0.0) is None  # nothing happened
    debouncer.event(1.0)
    assert debouncer.wait(1.0) == pytest.approx(0.01)
    debouncer.event(1.005)  # the burst goes on
    assert debouncer.wait(1.006) == pytest.approx(0.009)
    assert debouncer.wait(1.02) == 0.0  # quiet: over
    for step in range(1, 40):  # a stream that never pauses
        debouncer.event(1.0 + step * 0.009)
    assert debouncer.wait(1.31) == 0.0  # looked at after `longest` anyway
    debouncer.reset()
    assert debouncer.wait(5.0) is None


def test_glob_bases(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "server.py").write_text("")
    assert _glob_base(tmp_path, "src/**") == (tmp_path / "src", True)
    assert _glob_base(tmp_path, "src/*.py") == (tmp_path / "src", False)
    assert _glob_base(tmp_path, "src/*/x.py") == (tmp_path / "src", True)
    assert _glob_base(tmp_path, "*.go") == (tmp_path, False)
    assert _glob_base(tmp_path, "src") == (tmp_path / "src", True)
    assert _glob_base(tmp_path, "server.py") == (tmp_path, False)
    assert _glob_base(tmp_path, str(tmp_path / "src" / "**")) == (tmp_path / "src", True)


def test_spec_covers_what_the_cache_hashes(tmp_path: Path) -> None:
    for folder in ("e2e/seed", "app", "test-results"):
        (tmp_path / folder).mkdir(parents=True)
    config = parse_config(
        {"server": "x", "tests": "e2e", "data_seed": "e2e/seed", "inputs": ["app/**", "go.mod"]},
        root=tmp_path,
        source=tmp_path / "testpool.toml",
    )
    spec = watch_spec(config)
    assert spec.trees == {tmp_path / "e2e", tmp_path / "e2e" / "seed", tmp_path / "app"}
    assert tmp_path in spec.folders
    assert spec.ignored(tmp_path / "test-results" / "report.json")
    assert spec.ignored(tmp_path / ".test-cache.json")
    assert spec.ignored(tmp_path / "..test-cache.json.abc123.tmp")  # how it is written
    assert spec.ignored(tmp_path / "e2e" / "__pycache__" / "x.pyc")
    assert spec.ignored(tmp_path / "e2e" / ".test_a.py.swp")
    assert not spec.ignored(tmp_path / "e2e" / "test_a.py")


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _next_batch(watcher: FileWatcher, action: Callable[[], None], timeout: float = 10) -> Batch:
    async def main() -> Batch:
        batches = watcher.batches()
        waiting = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0)  # the reader is registered
        action()
        try:
            return await asyncio.wait_for(waiting, timeout)
        finally:
            await batches.aclose()

    return asyncio.run(main())


def test_real_edits_are_seen_in_one_batch_and_junk_is_not(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    spec = WatchSpec(
        frozenset({tests}),
        frozenset({tmp_path}),
        lambda path: path.name.endswith(".swp") or path.is_relative_to(results),
    )
    with FileWatcher(spec) as watcher:
        assert watcher.folders == 2

        def edit() -> None:
            (tests / ".test_a.py.swp").write_text("junk")  # ignored
            (results / "report.json").write_text("{}")  # not watched
            (tests / "test_a.py").write_text("x = 1\n")  # an editor's save: written twice
            (tests / "test_a.py").write_text("x = 2\n")
            (tmp_path / "testpool.toml").write_text("")

        batch = _next_batch(watcher, edit)
        assert batch.paths == {tests / "test_a.py", tmp_path / "testpool.toml"}

        def new_folder() -> None:
            (tests / "sub").mkdir()
            (tests / "sub" / "test_b.py").write_text("")

        batch = _next_batch(watcher, new_folder)
        assert tests / "sub" in batch.paths
        assert watcher.folders == 3
        # A file written in the new folder later is seen through its own watch.
        batch = _next_batch(watcher, lambda: _write(tests / "sub" / "test_b.py", "y = 1"))
        assert batch.paths == {tests / "sub" / "test_b.py"}

        def rename_into_place() -> None:  # how "safe write" editors save
            (tmp_path / "staging").write_text("z = 1")
            os.replace(tmp_path / "staging", tests / "test_c.py")

        batch = _next_batch(watcher, rename_into_place)
        assert tests / "test_c.py" in batch.paths
        batch = _next_batch(watcher, lambda: (tests / "test_c.py").unlink())
        assert batch.paths == {tests / "test_c.py"}


def test_a_tree_that_does_not_exist_yet_is_watched_once_made(tmp_path: Path) -> None:
    spec = WatchSpec(frozenset({tmp_path / "src"}), frozenset({tmp_path}))
    with FileWatcher(spec) as watcher:

        def make() -> None:
            (tmp_path / "src").mkdir()

        _next_batch(watcher, make)
        batch = _next_batch(watcher, lambda: _write(tmp_path / "src" / "app.py", "1"))
        assert batch.paths == {tmp_path / "src" / "app.py"}
