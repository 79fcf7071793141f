"""Test modules that read a worker's variables at import: imported anew in each worker.

In session mode pytest imports the test modules once, in the zygote, while the per-worker
variables hold stand-ins (:mod:`testpool.workerenv`). A module that reads one at import -- a
constant, a class body, a client object, a parametrize list -- would keep the stand-in on every
worker, where a fresh pytest per test (process mode) reads the worker's value. So:

1. From the moment testpool's plugin is imported in the zygote until collection ends,
   ``os.environ`` notes every read of a per-worker variable and the code that made it
   (:func:`watch`, :func:`stop_watching`). The collected test modules among the readers are
   *stale* (:func:`sort_reads`); the other readers (conftest.py files, plugins, modules the
   tests import) are noted for the failures they may cause.
2. In a forked worker, before the first test of a stale module runs there, the module is
   imported and collected anew with the worker's environment and its tests replaced
   (:class:`Renewal`, :func:`recollect`): once per module per worker process, and once more
   after ``--watch`` collects the module's file again (with the stand-ins, noting the reads
   the same way: see ``pytest_plugin.recollect``). A test file the zygote left out (it
   collects only what runs first) is collected by a worker when first sent one of its tests,
   the same way (``pytest_plugin._Zygote.collect_more``): a module of it that read one is
   stale in that worker too.
3. What cannot be imported anew keeps its stand-in, and a failing test says who read what
   (:func:`readers_for`, :func:`describe`).

Runs inside the test process (imported by :mod:`testpool.pytest_plugin`); imports nothing of
testpool.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    _Environ = os._Environ[str]
else:
    _Environ = os._Environ

# What testpool sets per worker (testpool.workerenv: the stand-ins, and TESTPOOL_WORKER).
PER_WORKER = ("TEST_BASE_URL", "PORT", "DATA_DIR", "API_TOKEN", "TESTPOOL_WORKER")
# Modules between a reader and os.environ (os.getenv, Mapping.get, ``in``): not the reader.
# _collections_abc names itself collections.abc.
_PLUMBING = frozenset({"os", "_collections_abc", "collections.abc", __name__})


@dataclass(frozen=True)
class Read:
    """One read of a per-worker variable while watched.

    ``frames`` are (file, line) from the code that read it outwards, up to and including the
    top level of the module whose import it ran in (``at_import``), else to the bottom of the
    stack (a hook or a function pytest called while collecting).
    """

    name: str
    frames: tuple[tuple[str, int], ...]
    at_import: bool


@dataclass(frozen=True)
class Stuck:
    """A module that read per-worker variables while pytest collected and is not imported anew."""

    path: str
    line: int
    names: tuple[str, ...]
    at_import: bool

    @property
    def is_conftest(self) -> bool:
        return os.path.basename(self.path) == "conftest.py"


# --- 1. watching os.environ in the zygote --------------------------------------------------

_names: frozenset[str] = frozenset()
_reads: set[Read] | None = None  # None: not watching
_watched: Any = None  # the os.environ whose class was swapped


class _WatchedEnviron(_Environ):
    """``os.environ``'s class while watched: every way of reading a variable (``[]``, ``get``,
    ``os.getenv``, ``in``, copies) goes through ``__getitem__``."""

    def __getitem__(self, key: str) -> str:
        if _reads is not None and key in _names:
            _note(key)
        return super().__getitem__(key)


def watch(names: Iterable[str]) -> None:
    """Start noting reads of ``names``. Called when testpool's plugin is imported in the zygote:
    before pytest imports the other plugins and the first conftest.py files."""
    global _names, _reads, _watched
    _names, _reads, _watched = frozenset(names), set(), os.environ
    # The class, not the object, is swapped: code that holds os.environ (``from os import
    # environ``) is watched too, and nothing is left holding a wrapper afterwards.
    _watched.__class__ = _WatchedEnviron


def stop_watching() -> list[Read]:
    """Restore ``os.environ`` and return the reads noted (none if it was not watched).
    Called when collection ends, before any fork."""
    global _reads, _watched
    reads, _reads = _reads, None
    if reads is None:
        return []
    _watched.__class__ = _Environ  # even if a conftest replaced os.environ meanwhile
    _watched = None
    return sorted(reads, key=lambda read: (read.name, read.frames))


def _note(name: str) -> None:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in _PLUMBING:
        frame = frame.f_back
    frames = []
    at_import = False
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno))
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
            at_import = True
            break
        frame = frame.f_back
    if _reads is not None:
        _reads.add(Read(name, tuple(frames), at_import))


def sort_reads(
    reads: Iterable[Read], modules: Mapping[str, Sequence[pytest.Module]]
) -> tuple[dict[pytest.Module, set[str]], list[Stuck]]:
    """Split the reads into the stale test modules and the other readers.

    ``modules`` are the collected test modules by their file (:func:`file_key`). A read whose
    frames pass through a test module's code -- its top level, a class body, a function it
    calls at import, its ``pytest_generate_tests`` -- makes that module stale: importing and
    collecting it again reads the variable again. Any other reader is stuck with what it read.
    Called by the zygote once collection has ended.
    """
    stale: dict[pytest.Module, set[str]] = {}
    stuck: dict[str, tuple[int, set[str], bool]] = {}
    keys: dict[str, str] = {}
    for read in reads:
        for path, _ in read.frames:
            key = keys.setdefault(path, file_key(path))
            if key in modules:
                for module in modules[key]:
                    stale.setdefault(module, set()).add(read.name)
                break
        else:
            if not read.frames:
                continue
            # Name the statement at the reader's top level, or the code that read (a hook).
            path, line = read.frames[-1] if read.at_import else read.frames[0]
            first, names, at_import = stuck.get(path, (line, set(), read.at_import))
            stuck[path] = (first, names | {read.name}, at_import)
    return stale, [
        Stuck(path, line, tuple(sorted(names)), at_import)
        for path, (line, names, at_import) in sorted(stuck.items())
    ]


def file_key(path: str | os.PathLike[str]) -> str:
    """One spelling of a file's path, whether it came from a code object or a node."""
    return os.path.normcase(os.path.realpath(path))


def modules_by_file(items: Iterable[pytest.Item]) -> dict[str, list[pytest.Module]]:
    """The test modules the items belong to, by :func:`file_key` (a file may have two: a
    module and its doctests)."""
    found: dict[str, list[pytest.Module]] = {}
    seen: set[pytest.Module] = set()
    for item in items:
        module = item.getparent(pytest.Module)
        if module is not None and module not in seen:
            seen.add(module)
            found.setdefault(file_key(module.path), []).append(module)
    return found


# --- 2. importing a stale module anew in a worker ------------------------------------------


class Renewal:
    """A worker's stale test modules; each is imported and collected anew before its first test.

    Made in the zygote (so every fork starts from the same list: a fork that replaces a crashed
    one imports them anew too); used by the worker's loop, which calls :meth:`prepare` before
    each test. With ``--watch``, the zygote and each worker tell it which files they collected
    again (:meth:`collected_again`), and a worker lists its tests as the zygote has them
    (:meth:`as_collected`).
    """

    def __init__(self, stale: Mapping[pytest.Module, Iterable[str]]) -> None:
        self._stale = {module: frozenset(names) for module, names in stale.items()}
        # Collectors (a module, a class) that raised or skipped when collected anew: node id,
        # the verdict for each of their tests, and the module's file (file_key).
        self._uncollected: list[tuple[str, dict[str, Any], str]] = []
        # The tests of each module imported anew here as the zygote collected them, by the
        # module's file and kind (a file may also have doctests): their ids may hold
        # stand-ins where the worker's hold its values.
        self._originals: dict[tuple[str, type], list[pytest.Item]] = {}

    def __bool__(self) -> bool:
        return bool(self._stale or self._uncollected)

    def prepare(
        self, session: pytest.Session, items: dict[str, pytest.Item], nodeid: str
    ) -> dict[str, Any] | None:
        """Import the test's module anew if it is stale, replacing its tests in ``items``.

        Returns the verdict for a test whose module or class could not be collected anew
        (failed, with pytest's report of it, or skipped by a module-level skip), else None;
        the caller then looks the test up in ``items`` again.
        """
        item = items.get(nodeid)
        module = item.getparent(pytest.Module) if item is not None else None
        if module is not None and self._stale.pop(module, None) is not None:
            self._renew(session, items, module)
        for collector, verdict, _ in self._uncollected:
            if nodeid == collector or nodeid.startswith(collector + "::"):
                return verdict
        return None

    def collected_again(
        self, files: Iterable[str | os.PathLike[str]], stale: Mapping[pytest.Module, Iterable[str]]
    ) -> None:
        """``--watch`` collected ``files`` again (with the stand-ins, see
        ``pytest_plugin.recollect``): what was known of their old modules goes (stale, failed
        to collect anew, imported anew), and their new modules in ``stale`` (those that read a
        per-worker variable this time) are imported anew before their first test here, and in
        every worker forked from now on. Called by the zygote and by each forked worker."""
        keys = {file_key(path) for path in files}
        self._stale = {m: n for m, n in self._stale.items() if file_key(m.path) not in keys}
        self._stale.update((module, frozenset(names)) for module, names in stale.items())
        self._uncollected = [entry for entry in self._uncollected if entry[2] not in keys]
        self._originals = {k: old for k, old in self._originals.items() if k[0] not in keys}

    def failed_to_collect(
        self, reports: Iterable[pytest.CollectReport], path: str | os.PathLike[str]
    ) -> None:
        """The collectors of ``path`` that failed or skipped when a worker collected the file
        the first time (``pytest_plugin._Zygote.collect_more``): their tests get that verdict
        here, as tests of a module that fails to import anew do."""
        key = file_key(path)
        self._uncollected += [(report.nodeid, collect_verdict(report), key) for report in reports]

    def as_collected(self, items: Iterable[pytest.Item]) -> list[pytest.Item]:
        """``items`` with the tests of each module imported anew here in place of the zygote's
        (the ids testpool knows: a worker that lists the suite must list those)."""
        if not self._originals:
            return list(items)
        listed: list[pytest.Item] = []
        done: set[tuple[str, type]] = set()
        keys: dict[pytest.Module, tuple[str, type]] = {}  # (realpath for each module once)
        for item in items:
            module = item.getparent(pytest.Module)
            key = None
            if module is not None:
                key = keys.get(module) or keys.setdefault(
                    module, (file_key(module.path), type(module))
                )
            if key is None or key not in self._originals:
                listed.append(item)
            elif key not in done:
                done.add(key)
                listed += self._originals[key]
        for key, old in self._originals.items():
            if key not in done:  # none of its tests was collected here
                listed += old
        return listed

    def _renew(
        self, session: pytest.Session, items: dict[str, pytest.Item], module: pytest.Module
    ) -> None:
        key = file_key(module.path)
        try:
            fresh, uncollected = recollect(session, module)
        except Exception as error:
            message = f"error collecting {module.nodeid} anew in the worker: {error!r}"
            verdict = {
                "outcome": "failed", "duration": 0.0,
                "message": message[:300], "output": traceback.format_exc(),
            }  # fmt: skip
            self._uncollected.append((module.nodeid, verdict, key))
            return
        self._uncollected += [
            (report.nodeid, collect_verdict(report), key) for report in uncollected
        ]
        old = [item for item in items.values() if item.getparent(pytest.Module) is module]
        self._originals[(key, type(module))] = old
        gone = {item.nodeid for item in old}
        # Where the old tests were (the order a worker lists them in, with --watch).
        kept, placed = list(items.items()), False
        items.clear()
        for nodeid, item in kept:
            if nodeid not in gone:
                items[nodeid] = item
            elif not placed:
                placed = True
                items.update((new.nodeid, new) for new in fresh)
        if not placed:
            items.update((new.nodeid, new) for new in fresh)
        session.items = [item for item in session.items if item.nodeid not in gone] + fresh


def recollect(
    session: pytest.Session, old: pytest.Module
) -> tuple[list[pytest.Item], list[pytest.CollectReport]]:
    """Import ``old``'s file anew and collect it into fresh nodes, as pytest's collection does.

    Returns the new items (after ``pytest_collection_modifyitems``, so a conftest's markers
    and deselection apply) and pytest's reports of the collectors that failed or skipped (the
    module, or a class whose collection raised). Called by :class:`Renewal`, in a worker.

    Every pytest internal this feature relies on is here (checked with pytest 8.0-8.4, 9.0,
    9.1 and 9.2):

    - pytest caches the imported module on the Module node (``obj``) and in ``sys.modules``;
      a fresh node, and no ``sys.modules`` entry, make it import the file again
      (``_pytest.python.importtestmodule``, whatever the ``--import-mode``).
    - The fresh node is made the way the old one's parent made it: the file's
      ``pytest_collect_file`` hook (through ``Session.gethookproxy``, which sees the file's
      conftest.py files), keeping the node of the old one's type (not, say, its doctests).
    - Fixtures the old module (and its classes) defined stay registered. pytest >= 9.1 ties
      them to the old nodes, out of the fresh nodes' sight; older pytest matches them by node
      id (``FixtureManager._arg2fixturedefs``, ``_nodeid_autousenames``), where they would
      shadow the new ones or be taken for the "super" fixture a new one overrides, so they
      are dropped first.
    - ``_pytest.runner.collect_one_node`` collects one node (see :func:`collect_tree`).
    """
    name = getattr(old.obj, "__name__", None)
    if name is not None and sys.modules.get(name) is old.obj:
        del sys.modules[name]
    manager = session._fixturemanager
    within = (old.nodeid, old.nodeid + "::")
    flat = getattr(manager, "_arg2fixturedefs", None)  # pytest < 9.2
    if isinstance(flat, dict):
        for fixturedefs in flat.values():
            fixturedefs[:] = [f for f in fixturedefs if not _within(f.baseid, within)]
    autouse = getattr(manager, "_nodeid_autousenames", None)
    if isinstance(autouse, dict):
        for nodeid in [nodeid for nodeid in autouse if _within(nodeid, within)]:
            del autouse[nodeid]

    assert old.parent is not None
    made = session.gethookproxy(old.path).pytest_collect_file(file_path=old.path, parent=old.parent)
    fresh = next(
        (node for node in made if type(node) is type(old) and node.nodeid == old.nodeid), None
    )
    if fresh is None:
        raise LookupError(f"pytest no longer collects {old.nodeid} as a {type(old).__name__}")
    items, uncollected = collect_tree(fresh)
    config = session.config
    config.hook.pytest_collection_modifyitems(session=session, config=config, items=items)
    return items, uncollected


def collect_tree(
    root: pytest.Collector,
) -> tuple[list[pytest.Item], list[pytest.CollectReport]]:
    """Collect ``root`` (a test file: importing it) and every collector below it, as pytest's
    collection does: the tests, in pytest's order, and the reports of the collectors that
    failed or skipped. Called by :func:`recollect`, and by a worker collecting a file the
    zygote left to it (``pytest_plugin._Zygote.collect_more``).

    ``_pytest.runner.collect_one_node`` collects one node, capturing its output and turning an
    exception into a report; the walk is ``Session.genitems`` without its duplicate filter,
    whose cache would take the fresh module for one already seen on pytest 8, and returning
    the failed collectors' reports, which genitems only passes to the hooks (a worker gives
    their tests the verdict)."""
    from _pytest.runner import collect_one_node

    items: list[pytest.Item] = []
    uncollected: list[pytest.CollectReport] = []
    pending: list[pytest.Item | pytest.Collector] = [root]
    while pending:
        node = pending.pop(0)
        if isinstance(node, pytest.Item):
            node.ihook.pytest_itemcollected(item=node)
            items.append(node)
            continue
        report = collect_one_node(node)
        if report.passed:
            pending[:0] = report.result  # depth first, in order, as pytest collects
        else:
            uncollected.append(report)
        node.ihook.pytest_collectreport(report=report)
    return items, uncollected


def _within(nodeid: str | None, within: tuple[str, str]) -> bool:
    return nodeid is not None and (nodeid == within[0] or nodeid.startswith(within[1]))


def collect_verdict(report: pytest.CollectReport) -> dict[str, Any]:
    """A test's verdict when its module failed to collect or skipped itself (both modes)."""
    if report.skipped:
        longrepr = report.longrepr
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        return {"outcome": "skipped", "duration": 0.0, "message": reason, "output": ""}
    text = report.longreprtext
    crash = getattr(report.longrepr, "reprcrash", None)
    lines = text.strip().splitlines()
    first = getattr(crash, "message", "") or next(
        (line for line in reversed(lines) if line.startswith("E ")), lines[0] if lines else ""
    )
    sections = "".join(f"----- {title} -----\n{body.rstrip()}\n" for title, body in report.sections)
    return {
        "outcome": "failed",
        "duration": 0.0,
        "message": f"error in collect: {first.removeprefix('E').strip()}"[:300],
        "output": f"{sections}----- collect failure -----\n{text.rstrip()}\n",
    }


# --- 3. what cannot be imported anew -------------------------------------------------------


def still_stuck(
    stuck: Iterable[Stuck], found: Iterable[Stuck], imported: Iterable[str]
) -> list[Stuck]:
    """``--watch``: the readers after a re-collection: the earlier ones (less the modules
    ``imported`` again, whose reads, if they still read, are among ``found``) and those
    ``found`` while it collected. Called by the zygote and by each forked worker."""
    again = {file_key(path) for path in imported}
    merged = {reader.path: reader for reader in stuck if file_key(reader.path) not in again}
    for reader in found:
        earlier = merged.get(reader.path)
        if earlier is not None:
            names = tuple(sorted({*earlier.names, *reader.names}))
            reader = Stuck(reader.path, earlier.line, names, earlier.at_import or reader.at_import)
        merged[reader.path] = reader
    return [merged[path] for path in sorted(merged)]


def readers_for(item: pytest.Item, stuck: Iterable[Stuck]) -> tuple[list[Stuck], list[Stuck]]:
    """The readers that may have failed ``item``: the conftest.py files of its folders, and
    every other reader (a plugin or a module the tests import may serve any test). Called by
    the worker for a failed test."""
    conftests, others = [], []
    here = Path(item.path).parent
    for reader in stuck:
        if not reader.is_conftest:
            others.append(reader)
        elif here.is_relative_to(Path(reader.path).parent):
            conftests.append(reader)
    return conftests, others


def describe(reader: Stuck, root: Path, *, line: bool) -> str:
    """ "tests/conftest.py read TEST_BASE_URL at import" (with ``line``: "(line 4)" after the file)."""
    path = Path(reader.path)
    shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    where = f" (line {reader.line})" if line else ""
    when = " at import" if reader.at_import else ""
    return f"{shown}{where} read {', '.join(reader.names)}{when}"
