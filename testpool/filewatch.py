"""Noticing that the project's files changed, for ``--watch``: inotify, and a debounce.

What a change *is* is decided elsewhere, by content digests (the cache's planning with a fresh
:class:`~testpool.hashing.FileHasher`): an event here only says "look again", and names the
paths it saw. So a missed or spurious event costs a look, never a wrong result, and a queue
overflow is simply "look at everything".

Why inotify through ``ctypes`` rather than a library or polling: testpool runs on Linux only
(it already relies on ``/proc`` and pidfds); inotify wakes us within a millisecond of an editor
closing a file and costs nothing while nothing changes, where polling the hashed files would
trade latency against CPU (``stat`` of every file every few milliseconds); and what we need of it
— recursive folders, new folders, an overflow — is the hundred lines below, with no dependency
or optional extra to install.

Called by :mod:`testpool.watch`. :class:`Debouncer` is pure (tested with a fake clock);
:class:`FileWatcher` owns the inotify descriptor.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from testpool.errors import InfrastructureError
from testpool.hashing import IGNORED_DIRS, is_ignored_name

if TYPE_CHECKING:
    from testpool.config import Config

# A burst of writes ends when no event came for QUIET seconds: an editor's save (a backup
# renamed, the file written, the backup removed) takes well under a millisecond, "save all" or
# a checkout a few. A later event only means one more look. A stream that never pauses is
# still looked at every LONGEST seconds.
QUIET = 0.01
LONGEST = 0.3

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# Not IN_MODIFY: a file is looked at once it is closed (or renamed into place), never halfway
# through being written. Creating a file counts once it is closed too (IN_CLOSE_WRITE).
MASK = (
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


@dataclass(frozen=True)
class Batch:
    """What changed in one burst: the paths seen, or ``overflow`` (look at everything)."""

    paths: frozenset[Path]
    overflow: bool = False


@dataclass
class Debouncer:
    """When a burst of events is over. Pure: the caller passes the time."""

    quiet: float = QUIET
    longest: float = LONGEST
    first: float | None = None
    last: float | None = None

    def event(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def wait(self, now: float) -> float | None:
        """Seconds until the burst counts as over (0: now); None if nothing happened yet."""
        if self.first is None or self.last is None:
            return None
        return max(0.0, min(self.last + self.quiet, self.first + self.longest) - now)

    def reset(self) -> None:
        self.first = self.last = None


@dataclass(frozen=True)
class WatchSpec:
    """Which folders to watch: ``trees`` with everything below them, ``folders`` alone."""

    trees: frozenset[Path]
    folders: frozenset[Path]
    ignored: Callable[[Path], bool] = field(default=lambda path: False, compare=False)


def watch_spec(config: Config) -> WatchSpec:
    """The folders holding what the cache hashes: the tests, the seed, the ``inputs`` and
    ``helpers`` globs, the configuration, secrets and ``files`` templates, and every folder from
    the tests folder up to the root (conftest files, pytest's ini files, go.mod)."""
    root = config.root
    trees = {config.tests_path}
    folders = {root, config.source.parent}
    if config.seed_path is not None:
        trees.add(config.seed_path)
    for pattern in (*config.inputs, *(config.helpers or ())):
        base, recursive = _glob_base(root, pattern)
        (trees if recursive else folders).add(base)
    for path in [*(config.path(p) for p in config.secrets), *config.file_templates().values()]:
        folders.add(path.parent)
    for parent in config.tests_path.parents:
        if not parent.is_relative_to(root):
            break
        folders.add(parent)
    results = config.results_path
    cache = config.cache_path

    def ignored(path: Path) -> bool:
        if IGNORED_DIRS.intersection(path.parts) or is_ignored_name(path.name):
            return True
        if path == results or path.is_relative_to(results):
            return True
        # The cache file, and the temporary file it is written through (fsutil.atomic_write).
        return path == cache or (
            path.parent == cache.parent and path.name.startswith(f".{cache.name}.")
        )

    return WatchSpec(frozenset(trees), frozenset(folders), ignored)


def _glob_base(root: Path, pattern: str) -> tuple[Path, bool]:
    """The folder a glob starts from, and whether it reaches below that folder."""
    parts = Path(pattern).parts
    literal: list[str] = []
    for part in parts:
        if any(char in part for char in "*?["):
            break
        literal.append(part)
    base = Path(*literal) if Path(pattern).is_absolute() else root.joinpath(*literal)
    rest = parts[len(literal) :]
    if not rest:  # a plain path: a folder (and what is in it), or a file in its folder
        return (base, True) if base.is_dir() else (base.parent, False)
    return base, len(rest) > 1 or "**" in rest


class _Libc:
    """The three inotify calls, from the C library."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            self.init1 = libc.inotify_init1
            self.add_watch = libc.inotify_add_watch
        except (OSError, AttributeError):
            raise InfrastructureError(
                "--watch needs inotify (Linux): the C library has no inotify_init1"
            ) from None
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class FileWatcher:
    """Watches a :class:`WatchSpec` with inotify and yields a :class:`Batch` per burst.

    The descriptor and its watches are made at construction, so events start queueing in the
    kernel at once (a change made while the first run plans and runs is seen afterwards).
    """

    def __init__(
        self,
        spec: WatchSpec,
        *,
        warn: Callable[[str], None] = lambda message: None,
        debouncer: Debouncer | None = None,
    ) -> None:
        self.spec = spec
        self._warn = warn
        self._warned = False
        self._debouncer = debouncer or Debouncer()
        self._libc = _Libc()
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise InfrastructureError(f"--watch cannot start inotify: {os.strerror(code)}")
        self._fd: int | None = fd
        self._watches: dict[int, tuple[Path, bool]] = {}  # wd -> (folder, with its sub-folders)
        self._pending: set[Path] = set()
        self._overflow = False
        for tree in sorted(spec.trees):
            self._add(tree, recursive=True)
        for folder in sorted(spec.folders - spec.trees):
            self._add(folder, recursive=False)

    @property
    def folders(self) -> int:
        """How many folders are watched."""
        return len(self._watches)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- watches ---------------------------------------------------------------------------

    def _add(self, folder: Path, *, recursive: bool) -> list[Path]:
        """Watch ``folder`` (and, if ``recursive``, every folder below it); returns the files
        found in the folders newly watched. A folder that does not exist yet is watched from
        its nearest existing parent, so its creation is seen."""
        if self.spec.ignored(folder):
            return []
        if not folder.is_dir():
            for parent in folder.parents:
                if parent.is_dir():
                    self._watch(parent, recursive=False)
                    break
            return []
        if not recursive:
            self._watch(folder, recursive=False)
            return []
        found: list[Path] = []
        for current, dirs, names in os.walk(folder):
            base = Path(current)
            dirs[:] = [d for d in dirs if not self.spec.ignored(base / d)]
            if self._watch(base, recursive=True):
                found.extend(base / name for name in names)
        return found

    def _watch(self, folder: Path, *, recursive: bool) -> bool:
        assert self._fd is not None
        wd = self._libc.add_watch(self._fd, os.fsencode(folder), MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC and not self._warned:
                self._warned = True
                self._warn(
                    f"cannot watch {folder} and the folders after it: the inotify watch limit "
                    "(fs.inotify.max_user_watches) is reached; changes there go unnoticed"
                )
            return False
        known = self._watches.get(wd)
        # The same folder may be both a tree and a plain folder: the tree wins.
        self._watches[wd] = (folder, recursive or (known is not None and known[1]))
        return True

    def _in_tree(self, path: Path) -> bool:
        return any(path == tree or path.is_relative_to(tree) for tree in self.spec.trees)

    # --- events ----------------------------------------------------------------------------

    def read_events(self) -> bool:
        """Read what the kernel has queued; True if any of it matters."""
        if self._fd is None:
            return False
        relevant = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                relevant |= self._event(wd, mask, os.fsdecode(raw.rstrip(b"\0")))
        return relevant

    def _event(self, wd: int, mask: int, name: str) -> bool:
        if mask & IN_Q_OVERFLOW:
            self._overflow = True
            return True
        if mask & IN_IGNORED:
            self._watches.pop(wd, None)  # the folder is gone
            return False
        watched = self._watches.get(wd)
        if watched is None:
            return False
        folder, recursive = watched
        if not name:  # the watched folder itself was deleted or moved
            self._pending.add(folder)
            return True
        path = folder / name
        if self.spec.ignored(path):
            return False
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO):
                if recursive or self._in_tree(path):
                    # Files may have been written in it before its watch existed.
                    self._pending.update(self._add(path, recursive=True))
                elif any(tree.is_relative_to(path) for tree in self.spec.trees):
                    for tree in self.spec.trees:
                        if tree.is_relative_to(path):
                            self._pending.update(self._add(tree, recursive=True))
            self._pending.add(path)
            return True
        if mask & IN_CREATE and not path.is_symlink():
            return False  # a new file counts once it is written and closed
        self._pending.add(path)
        return True

    def take(self) -> Batch:
        batch = Batch(frozenset(self._pending), self._overflow)
        self._pending = set()
        self._overflow = False
        return batch

    async def batches(self) -> AsyncGenerator[Batch, None]:
        """Every burst of changes, once it is over (see :class:`Debouncer`)."""
        assert self._fd is not None
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()

        def readable() -> None:
            if self.read_events():
                self._debouncer.event(loop.time())
                arrived.set()

        loop.add_reader(self._fd, readable)
        try:
            while True:
                await arrived.wait()
                while (left := self._debouncer.wait(loop.time())) is not None and left > 0:
                    arrived.clear()
                    try:
                        await asyncio.wait_for(arrived.wait(), left)
                    except TimeoutError:
                        pass
                arrived.clear()
                self._debouncer.reset()
                yield self.take()
        finally:
            if self._fd is not None:
                loop.remove_reader(self._fd)

    def __enter__(self) -> FileWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
