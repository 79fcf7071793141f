"""The result cache: skip a test only when it passed before and nothing it depends on changed.

Each entry keeps the digests of *what that test ran against*: its own files, the helpers, the
server's sources (``inputs``), the data seed, the run-affecting config, and a salted digest of
the secrets files. A run of a subset never makes other tests look current, because their
entries keep their own digests.

The file (``cache_file``, format documented by ``.test-cache.json.example``) is only ever
replaced atomically, and the read-merge-write happens under ``flock`` on a separate lock file,
so concurrent runs keep each other's results. A corrupt file, or one of another format version,
is a one-line warning and an empty cache — never a crash.

Called by the CLI pipeline: :func:`plan` before a run (and for ``testpool list``),
:class:`CacheStore` to load and to record results as tests finish.
"""

from __future__ import annotations

import fcntl
import json
import secrets as random_source
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testpool.fsutil import atomic_write
from testpool.hashing import FileHasher, combine, expand_globs, walk_files
from testpool.results import Status

if TYPE_CHECKING:
    from testpool.config import Config
    from testpool.runners.base import Runner, TestCase

VERSION = 1
# The order in which a changed input is named as the reason to rerun.
COMPONENTS = ("test", "helpers", "inputs", "seed", "config", "secrets")
REASONS = {
    "test": "test file changed",
    "helpers": "helpers changed",
    "inputs": "inputs changed",
    "seed": "data seed changed",
    "config": "config changed",
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
        return cls(
            status=Status(data["status"]),
            duration=float(data["duration"]),
            ran_at=str(data["ran_at"]),
            inputs=dict(inputs),
            secret_names=tuple(str(n) for n in data.get("secret_names", [])),
        )


@dataclass
class CacheData:
    salt: str
    tests: dict[str, CacheEntry] = field(default_factory=dict)
    discovery: dict[str, dict[str, Any]] = field(default_factory=dict)
    fresh: bool = False  # not read from a usable file

    @classmethod
    def empty(cls) -> CacheData:
        return cls(salt=random_source.token_hex(16), fresh=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "salt": self.salt,
            "tests": {test_id: self.tests[test_id].to_dict() for test_id in sorted(self.tests)},
            "discovery": self.discovery,
        }

    def durations(self) -> dict[str, float]:
        return {test_id: entry.duration for test_id, entry in self.tests.items()}


class CacheStore:
    """The cache file and its lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def load(self) -> tuple[CacheData, str | None]:
        """The cache, and a warning line if the file had to be ignored."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return CacheData.empty(), None
        except OSError as error:
            return (
                CacheData.empty(),
                f"cannot read cache file {self.path.name} ({error.strerror}); running without it",
            )
        return parse(text, self.path.name)

    def record(
        self,
        updates: Mapping[str, CacheEntry],
        discovery: Mapping[str, dict[str, Any]] | None = None,
        *,
        salt: str,
    ) -> None:
        """Merge ``updates`` into the file under the lock and replace it atomically.

        For a test both runs recorded, the later result wins. ``salt`` is the one the updates'
        secrets digests were made with; it becomes the file's salt if the file has none yet.
        """
        if not updates and not discovery:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                current, _ = self.load()
                if current.fresh:
                    current.salt = salt
                for test_id, entry in updates.items():
                    existing = current.tests.get(test_id)
                    if existing is None or existing.ran_at <= entry.ran_at:
                        current.tests[test_id] = entry
                if discovery:
                    current.discovery.update(discovery)
                atomic_write(self.path, json.dumps(current.to_dict(), indent=1) + "\n")
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def parse(text: str, name: str = "cache") -> tuple[CacheData, str | None]:
    """Parse a cache document; anything unusable gives an empty cache and a warning."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return CacheData.empty(), f"cache file {name} is corrupt ({error.msg}); ignoring it"
    if not isinstance(document, dict):
        return CacheData.empty(), f"cache file {name} is corrupt (not an object); ignoring it"
    if document.get("version") != VERSION:
        return (
            CacheData.empty(),
            f"cache file {name} has format version {document.get('version')!r} "
            f"(this testpool writes {VERSION}); ignoring it",
        )
    salt = document.get("salt")
    data = CacheData(
        salt=salt if isinstance(salt, str) and _is_hex(salt) else random_source.token_hex(16)
    )
    tests = document.get("tests")
    if isinstance(tests, dict):
        for test_id, raw in tests.items():
            try:
                data.tests[str(test_id)] = CacheEntry.from_dict(raw)
            except (KeyError, ValueError, TypeError):
                continue  # one bad entry means "run that test again"
    discovery = document.get("discovery")
    if isinstance(discovery, dict):
        data.discovery = {k: v for k, v in discovery.items() if isinstance(v, dict)}
    return data, None


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


def shared_inputs(config: Config, runner: Runner, hasher: FileHasher, salt: str) -> SharedInputs:
    from testpool.secrets import fingerprint

    seed = config.seed_path
    input_files = set(expand_globs(config.root, config.inputs))
    seed_files = set(walk_files(seed)) if seed else set()
    if config.helpers is not None:
        helper_files = set(expand_globs(config.root, config.helpers))
    else:
        # Server sources and seed data under the tests folder have reasons of their own.
        helper_files = set(runner.helper_files()) - input_files - seed_files
    config_document = {**config.run_affecting(), **runner.config_inputs()}
    secrets_paths = [config.path(p) for p in config.secrets]
    return SharedInputs(
        helpers=hasher.files(helper_files),
        inputs=hasher.files(input_files),
        seed=hasher.files(seed_files) if seed else "none",
        config=combine([json.dumps(config_document, sort_keys=True)]),
        secrets=fingerprint(secrets_paths, bytes.fromhex(salt), config.root)
        if secrets_paths
        else "none",
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
    return {
        "test": hasher.files(runner.own_files(case)),
        "helpers": shared.helpers,
        "inputs": shared.inputs,
        "seed": shared.seed,
        "config": shared.config,
        "secrets": shared.secrets,
    }


def decide(entry: CacheEntry | None, inputs: Mapping[str, str], *, full: bool) -> tuple[bool, str]:
    """(run?, reason) for one test. The rules of the cache, in one place."""
    if entry is None:
        return True, NOT_IN_CACHE
    if entry.status is not Status.PASSED:
        return True, PREVIOUSLY.get(entry.status, f"previously {entry.status.value}")
    for component in COMPONENTS:
        if entry.inputs.get(component) != inputs[component]:
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
