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

Called by the CLI pipeline: :func:`plan` before a run (and for ``testpool list``),
:class:`CacheStore` to load and to record results as tests finish.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import secrets as random_source
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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

VERSION = 1
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
class CacheEntry:
    """What the cache remembers about one test."""

    status: Status
    duration: float
    ran_at: str
    inputs: Mapping[str, str]
    secret_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "duration": round(self.duration, 4),
            "ran_at": self.ran_at,
            "inputs": dict(self.inputs),
            "secret_names": list(self.secret_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheEntry:
        inputs = data["inputs"]
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            raise ValueError("bad inputs")
        duration = float(data["duration"])
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError("bad duration")  # NaN would order the queue and reports wrongly
        return cls(
            status=Status(data["status"]),
            duration=duration,
            ran_at=str(data["ran_at"]),
            inputs=dict(inputs),
            secret_names=tuple(str(n) for n in data.get("secret_names", [])),
        )


@dataclass
class CacheData:
    salt: str
    tests: dict[str, CacheEntry] = field(default_factory=dict)
    discovery: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            "discovery": self.discovery,
            **({"stats": self.stats} if self.stats else {}),
        }

    def durations(self) -> dict[str, float]:
        return {test_id: entry.duration for test_id, entry in self.tests.items()}


class CacheStore:
    """The cache file. Every read-merge-write happens under ``flock`` on the file's folder,
    so no lock file is left in the project."""

    def __init__(self, path: Path) -> None:
        self.path = path

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
        stats: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Merge ``updates`` into the file under the lock and replace it atomically.

        For a test both runs recorded, the later result wins. ``salt`` is the one the updates'
        secrets digests were made with; it becomes the file's salt if the file has none yet.
        A file that is not a testpool cache is left alone (its load warned about it). Raises
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
                    if existing is None or existing.ran_at <= entry.ran_at:
                        current.tests[test_id] = entry
                if discovery:
                    current.discovery.update(discovery)
                if stats:
                    current.stats.update(stats)
                self._write(current)
        except OSError as error:
            raise CacheError(
                f"cannot write the cache file {self.path.name}: {error.strerror}"
            ) from None

    def _write(self, data: CacheData) -> None:
        atomic_write(self.path, json.dumps(data.to_dict(), indent=1) + "\n")


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
    if document["version"] != VERSION:
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
    )


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
