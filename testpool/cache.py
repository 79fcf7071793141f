"""The result cache: skip a test only when it passed before and nothing it depends on changed.

Each entry keeps the digests of *what that test ran against*: its own files, the helpers, the
server's sources (``inputs``), the data seed, the run-affecting config, and a salted digest of
the secrets files. A run of a subset never makes other tests look current, because their
entries keep their own digests.

The file (``cache_file``, format documented by ``.test-cache.json.example``) is only ever
replaced atomically, and the read-merge-write happens under ``flock`` on the file's folder, so
concurrent runs keep each other's results. A corrupt file, or one of another format version,
is a one-line warning and an empty cache — never a crash; a file that is not a testpool cache
at all is also never overwritten. A cache that cannot be written is a warning too.

Besides the digests, an entry keeps why the test last ran and its last :data:`HISTORY`
results (for ``testpool explain``), and the file keeps *manifests*: for each component digest
an entry refers to, what it was made of (file path -> digest, or config key -> digest), so that
``testpool explain`` can name the files that changed. Manifests no entry refers to are dropped
on every write. It also keeps run-wide ``stats`` (what a server start costs, for
``workers = "auto"``), which a file without them simply lacks (measured anew).

Called by the CLI pipeline: :func:`plan` before a run (and for ``testpool list``),
:class:`CacheStore` to load and to record results as tests finish, and ``testpool explain``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets as random_source
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.errors import CacheError
from testpool.fsutil import atomic_write
from testpool.hashing import FileHasher, combine, expand_globs, walk_files
from testpool.results import Status

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.runners.base import Runner, TestCase

VERSION = 2
# Format versions read and migrated in place (their entries lack history and reasons).
READABLE_VERSIONS = (1, VERSION)
HISTORY = 10  # results kept per test
# A manifest of more names than this is not kept: explain then names the component only.
MANIFEST_LIMIT = 5000
# The order in which a changed input is named as the reason to rerun.
# "services" is only in the key of a test that uses a service.
COMPONENTS = ("test", "shared", "helpers", "inputs", "seed", "config", "services", "secrets")
REASONS = {
    "test": "test file changed",
    "shared": "shared test code changed",
    "helpers": "helpers changed",
    "inputs": "inputs changed",
    "seed": "data seed changed",
    "config": "config changed",
    "services": "services changed",
    "secrets": "secrets changed",
}
PREVIOUSLY = {
    Status.FAILED: "previously failed",
    Status.TIMEOUT: "previously timed out",
    Status.ERROR: "previously errored",
    Status.FLAKY: "previously flaky",
    Status.SKIPPED: "previously skipped",
}
NOT_IN_CACHE = "not in cache"
FULL_RUN = "--full"
UNCHANGED = "unchanged"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PastResult:
    """One earlier result of a test, as its entry's history keeps it."""

    ran_at: str
    status: Status
    duration: float

    def encode(self) -> str:
        # One string per result: the history is read on every run, and a JSON string parses
        # several times faster than an array of three.
        return f"{self.ran_at} {self.status.value} {round(self.duration, 4)}"

    @classmethod
    def decode(cls, text: object) -> PastResult | None:
        """None for anything that is not one (the history is only ever advice)."""
        if not isinstance(text, str):
            return None
        parts = text.split(" ")
        if len(parts) != 3:
            return None
        try:
            duration = float(parts[2])
            status = Status(parts[1])
        except ValueError:
            return None
        if not (math.isfinite(duration) and duration >= 0):
            return None
        return cls(parts[0], status, duration)


@dataclass(frozen=True)
class CacheEntry:
    """What the cache remembers about one test: its last result, why it ran, the digests it
    ran against, and its last :data:`HISTORY` results (oldest first, the last one its own)."""

    status: Status
    duration: float
    ran_at: str
    inputs: Mapping[str, str]
    secret_names: tuple[str, ...] = ()
    reason: str = ""  # why the run that recorded it ran it ("test file changed", ...)
    # Encoded PastResults, decoded only when asked (:meth:`past`): the fully cached fast path
    # reads every entry and needs none of them.
    history: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "duration": round(self.duration, 4),
            "ran_at": self.ran_at,
            "reason": self.reason,
            "inputs": dict(self.inputs),
            "secret_names": list(self.secret_names),
            "history": list(self.history or (self.own_result().encode(),)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheEntry:
        inputs = data["inputs"]
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            raise ValueError("bad inputs")
        duration = float(data["duration"])
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError("bad duration")  # NaN would order the queue and reports wrongly
        history = data.get("history", ())
        return cls(
            status=Status(data["status"]),
            duration=duration,
            ran_at=str(data["ran_at"]),
            inputs=dict(inputs),
            secret_names=tuple(str(n) for n in data.get("secret_names", [])),
            reason=str(data.get("reason", "")),
            history=tuple(history) if isinstance(history, list) else (),
        )

    def own_result(self) -> PastResult:
        return PastResult(self.ran_at, self.status, self.duration)

    def past(self) -> list[PastResult]:
        """The last results, oldest first, this entry's own last (an entry of format 1 has
        only its own)."""
        results = {
            (r.ran_at, r.status): r for r in map(PastResult.decode, self.history) if r is not None
        }
        own = self.own_result()
        results.setdefault((own.ran_at, own.status), own)
        return sorted(results.values(), key=lambda r: r.ran_at)[-HISTORY:]

    def followed_by(self, later: CacheEntry) -> CacheEntry:
        """``later`` with this entry's history before its own (both merged, by time: two
        runs at once may record out of order)."""
        merged = {(r.ran_at, r.status): r for r in [*self.past(), *later.past()]}
        history = sorted(merged.values(), key=lambda r: r.ran_at)[-HISTORY:]
        return replace(later, history=tuple(r.encode() for r in history))


@dataclass
class CacheData:
    salt: str
    tests: dict[str, CacheEntry] = field(default_factory=dict)
    discovery: dict[str, dict[str, Any]] = field(default_factory=dict)
    # component digest -> what it was made of (name -> digest); see the module docstring
    manifests: dict[str, dict[str, str]] = field(default_factory=dict)
    # Run-wide measurements, e.g. what a server start costs (see testpool.autoworkers).
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    salt_from_file: bool = False  # False: ``salt`` was made up by this process
    foreign: bool = False  # the file is not a testpool cache: never overwrite it

    @classmethod
    def empty(cls, *, foreign: bool = False) -> CacheData:
        return cls(salt=random_source.token_hex(16), foreign=foreign)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "salt": self.salt,
            "tests": {test_id: self.tests[test_id].to_dict() for test_id in sorted(self.tests)},
            "manifests": {key: self.manifests[key] for key in sorted(self.manifests)},
            "discovery": self.discovery,
            **({"stats": self.stats} if self.stats else {}),
        }

    def referenced(self) -> set[str]:
        """The component digests some entry refers to."""
        return {digest for entry in self.tests.values() for digest in entry.inputs.values()}

    def durations(self) -> dict[str, float]:
        return {test_id: entry.duration for test_id, entry in self.tests.items()}


class CacheStore:
    """The cache file. Every read-merge-write happens under ``flock`` on the file's folder,
    so no lock file is left in the project."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # What this process's component digests are made of (see :func:`manifests_for`):
        # recorded with the entries that refer to them.
        self.manifests: dict[str, dict[str, str]] = {}

    def load(self) -> tuple[CacheData, str | None]:
        """The cache, and a warning line if the file had to be ignored."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return CacheData.empty(), None
        except OSError as error:
            return (
                CacheData.empty(),
                f"cannot read cache file {self.path.name} ({error.strerror}); running without it",
            )
        return parse(raw, self.path.name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock. On the folder rather than on a lock file: nothing to leave behind,
        and the cache file itself is replaced (a new inode) on every write."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def settle_salt(self, proposed: str) -> str:
        """The salt every run of this cache uses: the file's, or ``proposed`` written to the
        file now, before any digest is made with it.

        Called before the secrets digest is computed when the file has no salt yet: two first
        runs at once must not pick two salts, or each would take the other's results for
        "secrets changed". Raises :class:`CacheError` if the file cannot be written.
        """
        try:
            with self._locked():
                current, _ = self.load()
                if current.foreign:
                    return proposed  # nothing will be recorded: any salt will do
                if current.salt_from_file:
                    return current.salt
                current.salt = proposed
                self._write(current)
                return proposed
        except OSError as error:
            raise CacheError(
                f"cannot write the cache file {self.path.name}: {error.strerror}"
            ) from None

    def record(
        self,
        updates: Mapping[str, CacheEntry],
        discovery: Mapping[str, dict[str, Any]] | None = None,
        *,
        salt: str,
        manifests: Mapping[str, Mapping[str, str]] | None = None,
        stats: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Merge ``updates`` into the file under the lock and replace it atomically.

        For a test both runs recorded, the later result wins, and the histories are merged.
        ``salt`` is the one the updates' secrets digests were made with; it becomes the file's
        salt if the file has none yet. ``manifests`` (component digest -> what it was made of)
        are kept where an entry refers to them; the file's own are dropped once none does.
        ``stats`` (run-wide measurements) replace the file's, key by key. A file that is not a testpool cache is left alone (its load warned about it). Raises
        :class:`CacheError` if the file cannot be written.
        """
        if not updates and not discovery and not stats:
            return
        try:
            with self._locked():
                current, _ = self.load()
                if current.foreign:
                    return
                if not current.salt_from_file:
                    current.salt = salt
                for test_id, entry in updates.items():
                    existing = current.tests.get(test_id)
                    if existing is None:
                        current.tests[test_id] = entry
                    elif existing.ran_at <= entry.ran_at:
                        current.tests[test_id] = existing.followed_by(entry)
                    else:  # a result older than the file's (another run recorded later)
                        current.tests[test_id] = entry.followed_by(existing)
                if discovery:
                    current.discovery.update(discovery)
                referenced = current.referenced()
                for digest, manifest in {**self.manifests, **(manifests or {})}.items():
                    if digest in referenced and len(manifest) <= MANIFEST_LIMIT:
                        current.manifests[digest] = dict(manifest)
                current.manifests = {
                    digest: manifest
                    for digest, manifest in current.manifests.items()
                    if digest in referenced
                }
                if stats:
                    current.stats.update(stats)
                self._write(current)
        except OSError as error:
            raise CacheError(
                f"cannot write the cache file {self.path.name}: {error.strerror}"
            ) from None

    def _write(self, data: CacheData) -> None:
        atomic_write(self.path, dumps(data.to_dict()))


def dumps(document: Mapping[str, Any]) -> str:
    """The cache document as text: one line per test, per manifest, per discovered test and
    per stat (a diff or a grep shows one whole entry, and the file stays small and quick to
    read)."""

    def one_per_line(items: list[str], indent: str, brackets: str) -> str:
        if not items:
            return brackets
        inner = ",\n".join(f"{indent} {item}" for item in items)
        return f"{brackets[0]}\n{inner}\n{indent}{brackets[1]}"

    def keyed(mapping: Mapping[str, Any]) -> list[str]:
        return [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in mapping.items()]

    parts = []
    for key, value in document.items():
        if key in ("tests", "manifests", "stats") and isinstance(value, dict):
            text = one_per_line(keyed(value), " ", "{}")
        elif key == "discovery" and isinstance(value, dict):
            slots = []
            for slot, found in value.items():
                fields = [
                    f"{json.dumps(name)}: "
                    + (
                        one_per_line([json.dumps(row) for row in item], "   ", "[]")
                        if name == "tests" and isinstance(item, list)
                        else json.dumps(item)
                    )
                    for name, item in (found.items() if isinstance(found, dict) else [])
                ]
                slots.append(f"{json.dumps(slot)}: " + one_per_line(fields, "  ", "{}"))
            text = one_per_line(slots, " ", "{}")
        else:
            text = json.dumps(value)
        parts.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def parse(raw: bytes | str, name: str = "cache") -> tuple[CacheData, str | None]:
    """Parse a cache document; anything unusable gives an empty cache and a warning.

    A file that is damaged, or of another testpool format version, is rewritten by the run.
    One that is valid JSON but not a testpool cache (another tool's file of the same name) is
    never overwritten.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text)
    except UnicodeDecodeError:
        return CacheData.empty(), f"cache file {name} is corrupt (not UTF-8 text); ignoring it"
    except json.JSONDecodeError as error:
        return CacheData.empty(), f"cache file {name} is corrupt ({error.msg}); ignoring it"
    what = _not_ours(document)
    if what:
        return (
            CacheData.empty(foreign=True),
            f"cache file {name} is not a testpool cache ({what}); ignoring it and leaving it "
            "as it is: set cache_file to another file to cache results",
        )
    if document["version"] not in READABLE_VERSIONS:
        return (
            CacheData.empty(),
            f"cache file {name} was written by another version of testpool (format "
            f"{document['version']}; this one writes {VERSION}); ignoring it",
        )
    salt = document.get("salt")
    data = CacheData(salt=random_source.token_hex(16))
    if isinstance(salt, str) and _is_hex(salt):
        data.salt, data.salt_from_file = salt, True
    tests = document.get("tests")
    if isinstance(tests, dict):
        for test_id, raw_entry in tests.items():
            try:
                data.tests[str(test_id)] = CacheEntry.from_dict(raw_entry)
            except (KeyError, ValueError, TypeError):
                continue  # one bad entry means "run that test again"
    discovery = document.get("discovery")
    if isinstance(discovery, dict):
        data.discovery = {k: v for k, v in discovery.items() if isinstance(v, dict)}
    manifests = document.get("manifests")
    if isinstance(manifests, dict):
        # Checked when used (explain), not here: the fast path never reads them.
        data.manifests = {k: v for k, v in manifests.items() if isinstance(v, dict)}
    stats = document.get("stats")
    if isinstance(stats, dict):
        data.stats = {str(k): v for k, v in stats.items() if isinstance(v, dict)}
    return data, None


def _not_ours(document: Any) -> str:
    """Why a JSON document is not a testpool cache of any version ("" if it is one)."""
    kinds = {list: "a JSON array", str: "a JSON string", bool: "a JSON boolean", type(None): "null"}
    if not isinstance(document, dict):
        return kinds.get(type(document), "a JSON number")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        keys = ", ".join(sorted(map(str, document))[:5]) or "no keys"
        return f"a JSON object without testpool's format version; its keys: {keys}"
    return ""


def _is_hex(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


# --- fingerprints and the plan --------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """What the shared digests were made of, kept to build the manifests (see
    :func:`manifests_for`) only when results are recorded: a fully cached run needs none."""

    root: Path
    helper_files: frozenset[Path] = frozenset()
    input_files: frozenset[Path] = frozenset()
    seed_files: frozenset[Path] = frozenset()
    templates: Mapping[str, Path] = field(default_factory=dict)
    config_document: Mapping[str, Any] = field(default_factory=dict)
    secrets_paths: tuple[Path, ...] = ()
    salt: str = ""


# The seed component's name for the ``files`` table itself (the templates are named by path).
FILES_TABLE = "(the files table)"


@dataclass(frozen=True)
class SharedInputs:
    """The digests every test of a run shares (computed once per run)."""

    helpers: str
    inputs: str
    seed: str
    config: str
    secrets: str
    # The services every test uses (the workers' server's), and each service's digest.
    server_services: tuple[str, ...] = ()
    service_digests: Mapping[str, str] = field(default_factory=dict)
    sources: Sources | None = field(default=None, compare=False)


def shared_inputs(config: Config, runner: Runner, hasher: FileHasher, salt: str) -> SharedInputs:
    from testpool.requirements import closure, service_digests
    from testpool.secrets import fingerprint

    seed = config.seed_path
    input_files = set(expand_globs(config.root, config.inputs))
    seed_files = set(walk_files(seed)) if seed else set()
    templates = config.file_templates()
    seed_digest = hasher.files(seed_files) if seed else "none"
    if templates:
        # What goes into a DATA_DIR: the seed, and the files rendered into it.
        layout = json.dumps(dict(sorted(config.files.items())))
        seed_digest = combine([seed_digest, layout, hasher.files(templates.values())])
    if config.helpers is not None:
        helper_files = set(expand_globs(config.root, config.helpers))
    else:
        # Server sources and seed data under the tests folder have reasons of their own.
        helper_files = (
            set(runner.helper_files()) - input_files - seed_files - set(templates.values())
        )
    config_document = {**config.run_affecting(), **runner.config_inputs()}
    secrets_paths = [config.path(p) for p in config.secrets]
    return SharedInputs(
        helpers=hasher.files(helper_files),
        inputs=hasher.files(input_files),
        seed=seed_digest,
        config=combine([json.dumps(config_document, sort_keys=True)]),
        secrets=fingerprint(secrets_paths, bytes.fromhex(salt), config.root)
        if secrets_paths
        else "none",
        server_services=tuple(closure(config.services_for_server(), config.services)),
        service_digests=service_digests(config),
        sources=Sources(
            root=config.root,
            helper_files=frozenset(helper_files),
            input_files=frozenset(input_files),
            seed_files=frozenset(seed_files),
            templates=templates,
            config_document=config_document,
            secrets_paths=tuple(secrets_paths),
            salt=salt,
        ),
    )


def _files_manifest(paths: Iterable[Path], hasher: FileHasher, root: Path) -> dict[str, str]:
    return {_name(path, root): hasher.file(path) for path in paths}


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def shared_manifests(shared: SharedInputs, hasher: FileHasher) -> dict[str, dict[str, str]]:
    """Component -> what its digest of ``shared`` was made of (name -> digest): files for
    helpers, inputs and seed (plus the ``files`` table), keys for the config, files for the
    secrets (salted digests, like the component's)."""
    from testpool.secrets import fingerprint

    sources = shared.sources
    if sources is None:
        return {}
    root = sources.root
    seed = _files_manifest(sources.seed_files, hasher, root)
    if sources.templates:
        seed |= _files_manifest(sources.templates.values(), hasher, root)
        seed[FILES_TABLE] = combine(
            [json.dumps(dict(sorted(sources.templates.items())), default=str)]
        )
    salt = bytes.fromhex(sources.salt) if _is_hex(sources.salt) else b""
    return {
        "helpers": _files_manifest(sources.helper_files, hasher, root),
        "inputs": _files_manifest(sources.input_files, hasher, root),
        "seed": seed,
        "config": {
            key: combine([json.dumps(value, sort_keys=True, default=str)])
            for key, value in sources.config_document.items()
        },
        "secrets": {
            _name(path, root): fingerprint([path], salt, root) for path in sources.secrets_paths
        },
    }


def case_manifests(
    case: TestCase, runner: Runner, hasher: FileHasher, shared: SharedInputs
) -> dict[str, dict[str, str]]:
    """Component -> what its digest for ``case`` alone was made of (test, shared, services)."""
    root = shared.sources.root if shared.sources is not None else Path("/")
    manifests = {
        "test": _files_manifest(runner.own_files(case), hasher, root),
        "shared": runner.shared_manifest(case, hasher),
    }
    used = sorted({*case.requires, *shared.server_services})
    if used:
        manifests["services"] = {
            "requires": combine([json.dumps(sorted(case.requires))]),
            **{name: shared.service_digests.get(name, "") for name in used},
        }
    return manifests


def manifests_for(
    items: Iterable[PlanItem], runner: Runner, hasher: FileHasher, shared: SharedInputs
) -> dict[str, dict[str, str]]:
    """Component digest -> what it was made of, for every digest ``items`` refer to: what
    :meth:`CacheStore.record` keeps so that ``testpool explain`` can name changed files.
    Called before a run that records results (never on the fully cached path)."""
    found: dict[str, dict[str, str]] = {}
    common = shared_manifests(shared, hasher)
    for item in items:
        if all(digest in found or digest == "none" for digest in item.inputs.values()):
            continue  # (what its files are made of is known already)
        parts = {**common, **case_manifests(item.case, runner, hasher, shared)}
        for component, digest in item.inputs.items():
            if digest not in found and component in parts and digest != "none":
                found[digest] = parts[component]
    return found


@dataclass(frozen=True)
class PlanItem:
    """Whether one test runs, and why."""

    case: TestCase
    run: bool
    reason: str
    inputs: Mapping[str, str]


def fingerprint_of(
    case: TestCase, runner: Runner, hasher: FileHasher, shared: SharedInputs
) -> dict[str, str]:
    from testpool.requirements import cache_component

    inputs = {
        "test": hasher.files(runner.own_files(case)),
        "shared": runner.shared_digest(case, hasher),
        "helpers": shared.helpers,
        "inputs": shared.inputs,
        "seed": shared.seed,
        "config": shared.config,
        "secrets": shared.secrets,
    }
    services = cache_component(case, shared.server_services, shared.service_digests)
    if services is not None:
        inputs["services"] = services
    return inputs


def decide(entry: CacheEntry | None, inputs: Mapping[str, str], *, full: bool) -> tuple[bool, str]:
    """(run?, reason) for one test. The rules of the cache, in one place."""
    if entry is None:
        return True, NOT_IN_CACHE
    if entry.status is not Status.PASSED:
        return True, PREVIOUSLY.get(entry.status, f"previously {entry.status.value}")
    for component in COMPONENTS:
        if entry.inputs.get(component) != inputs.get(component):
            return True, REASONS[component]
    if full:
        return True, FULL_RUN
    return False, UNCHANGED


def plan(
    cases: Iterable[TestCase],
    data: CacheData,
    runner: Runner,
    hasher: FileHasher,
    shared: SharedInputs,
    *,
    full: bool = False,
) -> list[PlanItem]:
    items = []
    for case in cases:
        inputs = fingerprint_of(case, runner, hasher, shared)
        run, reason = decide(data.tests.get(case.id), inputs, full=full)
        items.append(PlanItem(case, run, reason, inputs))
    return items
