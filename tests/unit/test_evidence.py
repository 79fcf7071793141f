"""A failed attempt's evidence, on a real file system: the DATA_DIR listing (never following a
symlink), the server log slice, and the caps."""

from __future__ import annotations

import os
from pathlib import Path

from testpool.evidence import (
    CUT,
    SMALL_LIMIT,
    EvidenceCollector,
    last_lines,
    list_data_dir,
    read_slice,
)
from testpool.results import DataDirEntry


def test_the_listing_is_depth_first_relative_with_sizes_and_marked_links(tmp_path: Path) -> None:
    outside = tmp_path / "users-files"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.txt").write_text("never listed")
    data = tmp_path / "data"
    (data / "b" / "c").mkdir(parents=True)
    (data / "a.json").write_text("{}")
    (data / "b" / "c" / "z.bin").write_bytes(b"\0" * 300)
    (data / "b" / "y.txt").write_text("y")
    os.symlink(outside, data / "b" / "link-to-folder")
    os.symlink(tmp_path / "nothing-there", data / "dangling")
    os.mkfifo(data / "pipe")

    entries, total, note = list_data_dir(data)

    assert entries == [
        DataDirEntry("a.json", "file", 2),
        DataDirEntry("b/", "dir"),
        DataDirEntry("b/c/", "dir"),
        DataDirEntry("b/c/z.bin", "file", 300),
        DataDirEntry("b/link-to-folder", "link", 0, str(outside)),
        DataDirEntry("b/y.txt", "file", 1),
        DataDirEntry("dangling", "link", 0, str(tmp_path / "nothing-there")),
        DataDirEntry("pipe", "other"),
    ]
    assert (total, note) == (8, "")
    assert not any("secret" in e.path for e in entries), "a symlinked folder is not entered"


def test_a_data_dir_replaced_by_a_symlink_is_named_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "home"
    target.mkdir()
    (target / "file").write_text("x")
    os.symlink(target, tmp_path / "data")
    entries, total, note = list_data_dir(tmp_path / "data")
    assert entries == [DataDirEntry(".", "link", 0, str(target))] and total == 1
    assert note == "DATA_DIR itself is a symlink"


def test_a_missing_data_dir_is_a_note(tmp_path: Path) -> None:
    assert list_data_dir(tmp_path / "gone") == (
        [],
        0,
        "DATA_DIR cannot be read: No such file or directory",
    )


def test_the_listing_and_the_count_are_capped(tmp_path: Path) -> None:
    for n in range(50):
        (tmp_path / f"f{n:03d}").write_text("")
    entries, total, note = list_data_dir(tmp_path, limit=10, scan_limit=30)
    # Of a folder too big to read whole, the first names it gives, in order.
    names = [e.path for e in entries]
    assert (
        len(names) == 10
        and names == sorted(names)
        and set(names) < {f"f{n:03d}" for n in range(50)}
    )
    assert total == 30 and note == "stopped counting at 30 entries"
    entries, total, note = list_data_dir(tmp_path, limit=10)
    assert [e.path for e in entries] == [f"f{n:03d}" for n in range(10)]
    assert (total, note) == (50, "")


def test_a_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    os.close(os.open(os.fsencode(tmp_path) + b"/bad-\xff-name", os.O_CREAT | os.O_WRONLY))
    [entry], _, _ = list_data_dir(tmp_path)
    assert entry.path == "bad-\\xff-name"
    entry.path.encode("utf-8")


def test_the_log_slice_is_the_bytes_written_while_the_attempt_ran(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    log.write_bytes(b"before\nGET /a \xc3\xa9\nPOST /b\nafter\n")
    assert read_slice(log, 7, 7 + len(b"GET /a \xc3\xa9\nPOST /b\n"), 1000) == (
        "GET /a é\nPOST /b\n",
        False,
    )
    assert read_slice(log, 7, 7, 1000) == ("", False)
    assert read_slice(tmp_path / "missing.log", 0, 10, 1000) == ("", False)


def test_a_long_slice_keeps_its_end_from_a_line_start(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    lines = [f"line {n:04d}".encode() for n in range(1000)]
    log.write_bytes(b"\n".join(lines) + b"\n")
    text, cut = read_slice(log, 0, log.stat().st_size, 100)
    assert cut
    assert text.startswith(CUT + "\nline 09")
    assert text.endswith("line 0999\n")
    assert len(text) < 100 + len(CUT) + 2


def test_output_keeps_its_end() -> None:
    assert last_lines("short", 100) == ("short", False)
    kept, cut = last_lines("".join(f"{n}\n" for n in range(1000)), 20)
    assert cut and kept.startswith(CUT + "\n") and kept.endswith("999\n")


def test_the_run_budget_shrinks_what_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("x\n" * 50_000)
    collector = EvidenceCollector(budget=100_000, redact=lambda s: s.replace("x", "y"))
    first = collector.capture(output="o\n" * 50_000, log=log, span=(0, 100_000), data_dir=tmp_path)
    assert len(first.output) > 60_000 and first.truncated == ("output", "server_log")
    assert first.server_log.endswith("y\n"), "the slice is redacted"
    second = collector.capture(output="o\n" * 50_000, log=log, span=(0, 100_000), data_dir=tmp_path)
    assert len(second.output) <= SMALL_LIMIT + len(CUT) + 1, "the budget is spent"
    assert [e.path for e in second.data_dir] == ["w.log"]
