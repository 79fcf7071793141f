"""What a failed attempt leaves for the report: its output, the slice of its worker's server log
written while it ran, and what its ``DATA_DIR`` held right after it.

Called by the runner after every attempt that failed (``failed``, ``timeout``, ``error``), before
the worker's next test and before its ``DATA_DIR`` is re-seeded or replaced; the result goes
into the attempt (``report.json``, ``report.html``). Every text is capped, and a run keeps at most
:data:`RUN_BUDGET` of them at full size, so a suite of thousands of failures cannot make a
report of gigabytes.

A test owns its ``DATA_DIR`` and may have put anything there: the listing never follows a
symlink (it names the link and its target), never reads a file, and stops after
:data:`SCAN_LIMIT` entries.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from testpool.results import DataDirEntry, Evidence

TEXT_LIMIT = 64 * 1024  # bytes of server log, characters of output, per failed attempt
SMALL_LIMIT = 4 * 1024  # the same once the run's budget is spent
RUN_BUDGET = 32 * 1024 * 1024
LISTING_LIMIT = 200  # DATA_DIR entries listed per failed attempt
SCAN_LIMIT = 10_000  # entries looked at, at most (the count shown is then "at least")
CUT = "[testpool: earlier lines cut]"


class EvidenceCollector:
    """One per run: captures the evidence of failed attempts within the run's budget."""

    def __init__(self, budget: int = RUN_BUDGET, redact: Callable[[str], str] = str) -> None:
        self.budget = budget
        self.redact = redact
        self.used = 0

    def capture(
        self, *, output: str, log: Path | None, span: tuple[int, int] | None, data_dir: Path
    ) -> Evidence:
        limit = TEXT_LIMIT if self.used < self.budget else SMALL_LIMIT
        output_kept, output_cut = last_lines(output, limit)
        server_log, log_cut = ("", False)
        if log is not None and span is not None:
            server_log, log_cut = read_slice(log, span[0], span[1], limit)
            server_log = self.redact(server_log)
        entries, total, note = list_data_dir(data_dir)
        entries = [
            DataDirEntry(self.redact(e.path), e.kind, e.size, self.redact(e.target))
            for e in entries
        ]
        self.used += len(output_kept) + len(server_log)
        return Evidence(
            output=output_kept,
            server_log=server_log,
            data_dir=tuple(entries),
            data_dir_total=total,
            data_dir_note=note,
            truncated=tuple(
                name for name, cut in (("output", output_cut), ("server_log", log_cut)) if cut
            ),
        )


def last_lines(text: str, limit: int) -> tuple[str, bool]:
    """The end of ``text`` within ``limit`` characters, from a line start; (text, cut?)."""
    if len(text) <= limit:
        return text, False
    kept = text[-limit:]
    newline = kept.find("\n")
    if 0 <= newline < len(kept) - 1:
        kept = kept[newline + 1 :]
    return f"{CUT}\n{kept}", True


def read_slice(path: Path, start: int, end: int, limit: int) -> tuple[str, bool]:
    """Bytes ``start``..``end`` of ``path`` as text; only the last ``limit`` bytes, from a line
    start, when the slice is longer. ("", False) if the file cannot be read."""
    if end <= start:
        return "", False
    cut = end - start > limit
    begin = end - limit if cut else start
    try:
        with path.open("rb") as handle:
            handle.seek(begin)
            data = handle.read(end - begin)
    except OSError:
        return "", False
    if cut:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
    text = data.decode("utf-8", errors="replace")
    return (f"{CUT}\n{text}" if cut else text), cut


def list_data_dir(
    folder: Path, limit: int = LISTING_LIMIT, scan_limit: int = SCAN_LIMIT
) -> tuple[list[DataDirEntry], int, str]:
    """Everything under ``folder``, depth first in name order, as root-relative entries:
    (the first ``limit``, how many there are (at most ``scan_limit`` counted), a note)."""
    try:
        top = os.lstat(folder)
    except OSError as failure:
        return [], 0, f"DATA_DIR cannot be read: {failure.strerror}"
    if stat.S_ISLNK(top.st_mode):
        target = _readable(_readlink(folder))
        return [DataDirEntry(".", "link", 0, target)], 1, "DATA_DIR itself is a symlink"
    if not stat.S_ISDIR(top.st_mode):
        return [], 0, "DATA_DIR is not a folder"
    listed: list[DataDirEntry] = []
    total = 0
    # Depth first, in name order: a folder's content right after it (``a/``, ``a/x``, ``b``).
    pending: list[tuple[str, str]] = []  # (path, root-relative name), next one last
    children, problem = _children(str(folder), "", scan_limit)
    if problem:
        return [], 0, f"DATA_DIR cannot be listed: {problem}"
    pending.extend(reversed(children))
    while pending:
        path, name = pending.pop()
        total += 1
        try:
            info = os.lstat(path)
        except OSError:
            entry = DataDirEntry(name, "unreadable", 0)
        else:
            if stat.S_ISLNK(info.st_mode):
                entry = DataDirEntry(name, "link", 0, _readable(_readlink(Path(path))))
            elif stat.S_ISDIR(info.st_mode):
                inside, problem = _children(path, name + "/", scan_limit)
                kind = "unreadable" if problem else "dir"
                entry = DataDirEntry(name + "/", kind, 0, problem)
                pending.extend(reversed(inside))
            elif stat.S_ISREG(info.st_mode):
                entry = DataDirEntry(name, "file", info.st_size)
            else:
                entry = DataDirEntry(name, "other", 0)
        if len(listed) < limit:
            listed.append(entry)
        if total >= scan_limit and pending:
            return listed, total, f"stopped counting at {scan_limit} entries"
    return listed, total, ""


def _children(path: str, prefix: str, limit: int) -> tuple[list[tuple[str, str]], str]:
    """The entries of folder ``path`` in name order as (path, name), or an error. Of a folder
    of more than ``limit`` entries, the first ``limit + 1`` it gives (enough to see that the
    listing stops there)."""
    try:
        with os.scandir(path) as found:
            names = sorted(entry.name for entry, _ in zip(found, range(limit + 1), strict=False))
    except OSError as error:
        return [], error.strerror or "cannot be listed"
    return [(os.path.join(path, name), prefix + _readable(name)) for name in names], ""


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _readable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 shown as ``\\xff`` (never a lone
    surrogate, which JSON and HTML writers cannot carry)."""
    return name.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
