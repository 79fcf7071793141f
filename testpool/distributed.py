"""A work queue in Redis, shared by every machine running the same build.

``testpool --queue redis://HOST:PORT/DB --build ID`` on each of N machines: the first to arrive
fills the queue (atomically: machines starting at once fill it once), and every machine's
workers take tests from it, longest first. Each machine still runs its own worker pool, its own
cache and its own reports; ``testpool report --queue … --build ID`` waits for every test's result
and writes the build's reports and exit code.

Keys (all under ``testpool:{ID}:``, one hash tag, so a Redis Cluster keeps them on one node;
they expire :data:`KEY_TTL` after the last change):

- ``meta`` (hash): ``digest`` of the test ids, ``total``, ``retries``, ``max_failures``,
  ``lease_ms``, ``stopped``, ``final_failures``, who filled it and when;
- ``order`` (list): every test id, in the filler's discovery order (the report's order);
- ``files`` (hash): test id → its file;
- ``pending`` (list): tests to hand out, longest recorded duration first;
- ``leases`` (sorted set): test id → when its lease ends (ms, Redis's clock);
- ``holder`` (hash): test id → the machine holding its lease;
- ``history`` (hash): test id → JSON list of its attempts, from whichever machine;
- ``results`` (hash): test id → its final status, written once (a later result of the same
  test — a machine that lost its lease and finished anyway — is ignored);
- ``detail`` (hash): test id → JSON of the final attempt's details (duration, message, log,
  machine, the input digests it ran against — so results flow into every machine's cache);
- ``failures``, ``infra``, ``expired``, ``avoid`` (hashes): per-test counters for retries and
  the machine a retry should avoid;
- ``machines`` (hash): machine → JSON (host, pid, first and last seen).

Every script that makes a test available or records a final result publishes on the channel
named like the ``meta`` key, so idle machines ask again at once rather than at their next poll
(a poll remains, for leases that expire). A lease lasts ``lease`` seconds and the holder renews
it every third of that; a machine that
stops renewing (lost, SIGKILLed) loses its tests to the next machine that asks, which records a
lost attempt (``error``) for them. A test whose lease expires three times is given up as an
``error``. Every change is one Lua script, so two machines never take the same test and a
result is recorded exactly once.

Called by the CLI pipeline (fill/join before a run, the flow of results into the cache after
it, ``testpool report``) and by the runner (:class:`RedisQueue`, its consumers' queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from testpool.errors import ConfigError, ExitCode, InfrastructureError
from testpool.hashing import combine
from testpool.results import Attempt, Outcome, RunSummary, Status, TestResult
from testpool.scheduler import Decision, Task, order_tests

if TYPE_CHECKING:
    import redis
    import redis.asyncio

KEY_TTL = 7 * 24 * 3600  # seconds a build's keys outlive its last change
MAX_LEASE_EXPIRIES = 3  # a test whose machine is lost this often is given up
AVOID_WINDOW = 16  # how far down the queue a machine looks for a test it did not fail
CONNECT_TIMEOUT = 5.0
_BUILD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,199}$")
KEYS = (
    "meta", "order", "files", "pending", "leases", "holder", "history", "results", "detail",
    "failures", "infra", "expired", "avoid", "machines",
)  # fmt: skip


@dataclass(frozen=True)
class QueueOptions:
    """``--queue``, ``--build`` and friends, as given on the command line."""

    url: str
    build: str
    resume: bool = False
    lease: float = 30.0
    machine: str = field(default_factory=lambda: f"{socket.gethostname()} (pid {os.getpid()})")

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"--queue must be a redis:// (or rediss://, unix://) URL, got {self.where}"
            )
        if not _BUILD_ID.match(self.build):
            raise ConfigError(
                "--build must be 1-200 letters, digits or ._:/@+=- (e.g. the CI's run id), "
                f"got {self.build!r}"
            )
        if not self.lease > 0:
            raise ConfigError("--lease-timeout must be a positive number of seconds")

    @property
    def where(self) -> str:
        """The URL without a password, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def keys_of(build: str) -> dict[str, str]:
    return {name: f"testpool:{{{build}}}:{name}" for name in KEYS}


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError(
            "--queue needs the Redis client: pip install 'testpool[queue]' (or pip install redis)"
        ) from None
    return redis


def connect(options: QueueOptions) -> redis.Redis:
    """A synchronous client, checked with a PING. Raises :class:`InfrastructureError` (exit 3)
    with one line if Redis cannot be reached."""
    module = _redis_module()
    client = module.Redis.from_url(
        options.url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
        decode_responses=True,
    )
    try:
        client.ping()
    except module.RedisError as error:
        raise InfrastructureError(f"cannot reach Redis at {options.where}: {error}") from None
    return client  # type: ignore[no-any-return]


# --- the Lua scripts: every change to a build is one of these, atomic in Redis ----------------

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the build's keys in KEYS order. ARGV: digest, total, retries, max_failures, lease_ms,
# machine, ttl, n_run, run ids..., n_cached, (cached id, detail json)..., n_all, (id, file)...
SEED = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local done = redis.call('HLEN', KEYS[8])
  return {'exists', redis.call('HGET', KEYS[1], 'digest'), redis.call('HGET', KEYS[1], 'total'),
          done, redis.call('HGET', KEYS[1], 'filled_by')}
end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'total', ARGV[2], 'retries', ARGV[3],
           'max_failures', ARGV[4], 'lease_ms', ARGV[5], 'filled_by', ARGV[6],
           'filled_at', now, 'stopped', 0, 'final_failures', 0)
local i = 9
local n_run = tonumber(ARGV[8])
for k = 1, n_run do redis.call('RPUSH', KEYS[4], ARGV[i]); i = i + 1 end
local n_cached = tonumber(ARGV[i]); i = i + 1
for k = 1, n_cached do
  redis.call('HSET', KEYS[8], ARGV[i], 'cached')
  redis.call('HSET', KEYS[9], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local n_all = tonumber(ARGV[i]); i = i + 1
for k = 1, n_all do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ARGV[7])) end
return {'filled'}
"""
)

# Give back expired leases (a lost attempt each), then lease the next test to ARGV[1].
# ARGV: machine, lease_ms, avoid_window, max_expiries, ttl, lost-attempt json template
LEASE = (
    _NOW
    + """
local stale = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[5], id)
  local who = redis.call('HGET', KEYS[6], id) or '?'
  redis.call('HDEL', KEYS[6], id)
  if redis.call('HEXISTS', KEYS[8], id) == 0 then
    local lost = cjson.decode(ARGV[6])
    lost['origin'] = who
    local h = redis.call('HGET', KEYS[7], id)
    local list = {}
    if h then list = cjson.decode(h) end
    list[#list + 1] = lost
    redis.call('HSET', KEYS[7], id, cjson.encode(list))
    local n = redis.call('HINCRBY', KEYS[12], id, 1)
    if n >= tonumber(ARGV[4]) then
      redis.call('HSET', KEYS[8], id, 'error')
      redis.call('HSET', KEYS[9], id, cjson.encode({message = lost['message'] ..
        ' (' .. n .. ' times: given up)', origin = who}))
    else
      redis.call('LPUSH', KEYS[4], id)
    end
  end
end
if redis.call('HGET', KEYS[1], 'stopped') == '1' then return nil end
-- The first test this machine did not fail (else the first), skipping copies of tests that
-- got their result meanwhile (a lease that ran out while its holder went on and finished).
local chosen, fallback = nil, nil
while true do
  local window = redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)
  if #window == 0 then break end
  local dropped = false
  for _, id in ipairs(window) do
    if redis.call('HEXISTS', KEYS[8], id) == 1 then
      redis.call('LREM', KEYS[4], 0, id)
      dropped = true
    else
      fallback = fallback or id
      if redis.call('HGET', KEYS[13], id) ~= ARGV[1] then chosen = id; break end
    end
  end
  if chosen or fallback or not dropped then break end
end
chosen = chosen or fallback
if not chosen then return nil end
redis.call('LREM', KEYS[4], 1, chosen)
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), chosen)
redis.call('HSET', KEYS[6], chosen, ARGV[1])
local h = redis.call('HGET', KEYS[7], chosen)
local attempts = 0
if h then attempts = #cjson.decode(h) end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ARGV[5])) end
return {chosen, attempts + 1}
"""
)

# ARGV: machine, lease_ms, ids... → the ids this machine no longer holds.
RENEW = (
    _NOW
    + """
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[6], id) == ARGV[1] then
    redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), id)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""
)

# ARGV: id, machine, status, attempt json, detail json, ttl
FINISH = """
local id = ARGV[1]
if redis.call('HGET', KEYS[6], id) == ARGV[2] then
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
end
local recorded = redis.call('HGET', KEYS[8], id)
if recorded then return {'duplicate', recorded} end
local h = redis.call('HGET', KEYS[7], id)
local list = {}
if h then list = cjson.decode(h) end
list[#list + 1] = cjson.decode(ARGV[4])
redis.call('HSET', KEYS[7], id, cjson.encode(list))
local status = ARGV[3]
local final = nil
if status == 'passed' then
  if redis.call('HEXISTS', KEYS[10], id) == 1 then final = 'flaky' else final = 'passed' end
elseif status == 'skipped' then
  final = 'skipped'
elseif status == 'error' then
  if redis.call('HINCRBY', KEYS[11], id, 1) > 1 then final = 'error' end
else
  local n = redis.call('HINCRBY', KEYS[10], id, 1)
  if n > tonumber(redis.call('HGET', KEYS[1], 'retries')) then final = status end
  redis.call('HSET', KEYS[13], id, ARGV[2])
end
if not final then
  if redis.call('HGET', KEYS[1], 'stopped') == '1' then final = status else
    redis.call('LPUSH', KEYS[4], id)
    redis.call('PUBLISH', KEYS[1], 'requeued')
    return {'requeued'}
  end
end
redis.call('HSET', KEYS[8], id, final)
redis.call('HSET', KEYS[9], id, ARGV[5])
if final == 'failed' or final == 'timeout' or final == 'error' then
  local n = redis.call('HINCRBY', KEYS[1], 'final_failures', 1)
  local most = tonumber(redis.call('HGET', KEYS[1], 'max_failures'))
  if most > 0 and n >= most then redis.call('HSET', KEYS[1], 'stopped', 1) end
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, tonumber(ARGV[6])) end
redis.call('PUBLISH', KEYS[1], 'final')
return {'final', final}
"""

# Give the tests this machine still holds back to the queue (it is stopping). ARGV: machine, ids
RELEASE = """
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[6], id) == ARGV[1] and redis.call('HEXISTS', KEYS[8], id) == 0 then
    redis.call('ZREM', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('LPUSH', KEYS[4], id)
    n = n + 1
  end
end
if n > 0 then redis.call('PUBLISH', KEYS[1], 'released') end
return n
"""


# --- filling and joining a build ---------------------------------------------------------------


@dataclass(frozen=True)
class TestEntry:
    """What the filler tells the queue about one selected test."""

    __test__ = False

    id: str
    file: str
    run: bool  # False: the filler's cache skips it (recorded as ``cached`` at once)


@dataclass(frozen=True)
class Joined:
    """How this machine came into the build."""

    filled: bool  # True: this machine filled the queue
    total: int
    finished: int  # results already recorded when this machine arrived
    known: frozenset[str]  # every test id of the build (the filler's)


def tests_digest(ids: Iterable[str]) -> str:
    return combine(sorted(ids))


def fill_or_join(
    client: redis.Redis,
    options: QueueOptions,
    tests: Sequence[TestEntry],
    durations: Mapping[str, float],
    *,
    retries: int,
    max_failures: int | None,
) -> Joined:
    """Fill the build's queue, or join the build another machine filled.

    Raises :class:`ConfigError` (exit 2) for a build id reused — filled with another set of
    tests, or already finished — unless ``options.resume``.
    """
    keys = keys_of(options.build)
    digest = tests_digest(t.id for t in tests)
    run = order_tests([t.id for t in tests if t.run], durations)
    cached = [t for t in tests if not t.run]
    args: list[Any] = [
        digest, len(tests), retries, max_failures or 0, int(options.lease * 1000),
        options.machine, KEY_TTL, len(run), *run, len(cached),
    ]  # fmt: skip
    for test in cached:
        args += [
            test.id,
            json.dumps({"file": test.file, "message": "unchanged", "origin": options.machine}),
        ]
    args.append(len(tests))
    for test in tests:
        args += [test.id, test.file]
    try:
        answer = client.eval(SEED, len(KEYS), *keys.values(), *args)
        _register(client, keys, options.machine)
    except _redis_module().RedisError as error:
        raise InfrastructureError(f"Redis at {options.where} failed: {error}") from None
    ids = frozenset(t.id for t in tests)
    if answer[0] == "filled":
        return Joined(True, len(tests), len(cached), ids)
    _, their_digest, total, finished, filled_by = answer
    total, finished = int(total), int(finished)
    known = frozenset(str(test_id) for test_id in client.lrange(keys["order"], 0, -1))
    if their_digest != digest and not options.resume:
        raise ConfigError(
            f"build {options.build} was filled by {filled_by} with another set of tests "
            f"({total}; this machine has {len(tests)}): use a new --build id for each run "
            "(e.g. the CI's run id), or --resume to join it anyway"
        )
    if finished >= total and not options.resume:
        raise ConfigError(
            f"build {options.build} has already finished ({finished} results): use a new "
            "--build id for each run, `testpool report` to see it, or --resume"
        )
    return Joined(False, total, finished, known)


def _register(client: redis.Redis, keys: Mapping[str, str], machine: str) -> None:
    now = time.time()
    entry = {"host": socket.gethostname(), "pid": os.getpid(), "first_seen": now, "last_seen": now}
    previous = client.hget(keys["machines"], machine)
    if previous:
        try:
            entry["first_seen"] = json.loads(previous)["first_seen"]
        except (ValueError, KeyError, TypeError):
            pass
    client.hset(keys["machines"], machine, json.dumps(entry))
    client.expire(keys["machines"], KEY_TTL)


# --- the consumers' queue during a run ----------------------------------------------------------


class RedisQueue:
    """The shared queue behind the runner's consumers (see :mod:`testpool.queues`).

    Every Redis error makes it *lost*: it hands out nothing more, the tests running here still
    finish and are reported locally, and :attr:`error` says what happened (the run then ends
    with an infrastructure error, exit 3).
    """

    def __init__(
        self,
        options: QueueOptions,
        *,
        inputs: Mapping[str, Mapping[str, str]],
        files: Mapping[str, str],
        poll: float | None = None,
    ) -> None:
        self.options = options
        self.keys = keys_of(options.build)
        self.inputs = inputs
        self.files = files
        self.poll = poll if poll is not None else min(1.0, options.lease / 4)
        self.events: list[str] = []
        self.error: str | None = None
        self.unrecorded: list[str] = []
        self._live: set[int] = set()
        self._running: dict[int, str] = {}
        self._stopped = False
        self._finished = False
        self._client: redis.asyncio.Redis | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._news = asyncio.Event()  # another machine made a test available or finished one
        self._lease_ms = int(options.lease * 1000)

    async def start(self, workers: Iterable[int]) -> None:
        module = _redis_module()
        self._client = module.asyncio.Redis.from_url(
            self.options.url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=max(CONNECT_TIMEOUT, self.options.lease / 3),
            decode_responses=True,
        )
        self._live = set(workers)
        self._heartbeat = asyncio.ensure_future(self._renew_forever())
        self._listener = asyncio.ensure_future(self._listen())

    # --- the WorkQueue protocol --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished or self._stopped or self.error is not None

    @property
    def live_workers(self) -> frozenset[int]:
        return frozenset(self._live)

    @property
    def pending(self) -> list[str]:
        return []  # the machines share it: no local estimate

    async def next_for(self, worker: int) -> Task | None:
        if self.done or worker not in self._live:
            return None
        lost_attempt = json.dumps(
            {
                "worker": -1, "status": "error", "duration": 0, "started": 0, "finished": 0,
                "message": "its machine stopped renewing the lease (lost, or killed)",
            }
        )  # fmt: skip
        answer = await self._call(
            LEASE,
            self.options.machine, self._lease_ms, AVOID_WINDOW, MAX_LEASE_EXPIRIES, KEY_TTL,
            lost_attempt,
        )  # fmt: skip
        if self.error is not None:
            return None
        if not answer:
            await self._check_finished()
            return None
        test_id, attempt = str(answer[0]), int(answer[1])
        self._running[worker] = test_id
        return Task(test_id, attempt)

    async def finish(self, worker: int, task: Task, outcome: Outcome, attempt: Attempt) -> Decision:
        self._running.pop(worker, None)
        local = Decision(outcome.status)
        if self.error is not None:
            self.unrecorded.append(task.test_id)
            return local
        record = {**attempt.to_dict(), "origin": self.options.machine}
        # A failure's output, server log and DATA_DIR listing stay in this machine's reports:
        # the build's Redis keeps what every machine needs to decide, not the evidence.
        record.pop("evidence", None)
        detail = {
            "file": self.files.get(task.test_id, ""),
            "duration": round(outcome.duration, 4),
            "worker": worker,
            "message": outcome.message,
            "origin": self.options.machine,
            "ran_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "inputs": dict(self.inputs.get(task.test_id, {})),
        }
        answer = await self._call(
            FINISH,
            task.test_id, self.options.machine, outcome.status.value,
            json.dumps(record), json.dumps(detail), KEY_TTL,
        )  # fmt: skip
        if self.error is not None or not answer:
            self.unrecorded.append(task.test_id)
            return local
        if answer[0] == "requeued":
            return Decision(None)
        if answer[0] == "duplicate":
            self.events.append(
                f"{task.test_id}: another machine recorded its result first ({answer[1]}) "
                "after this machine's lease ran out; this attempt is not in the build's result"
            )
            return local
        return Decision(Status(answer[1]))

    async def wait(self, changed: asyncio.Event) -> None:
        """Until this machine's consumers or another machine changed something, or a poll
        interval passed (leases expire without a word)."""
        changed.clear()
        self._news.clear()
        waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._news.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def retire_worker(self, worker: int) -> None:
        self._live.discard(worker)

    def stop(self) -> list[str]:
        self._stopped = True
        return []

    async def close(self) -> None:
        """Stop renewing, give back what this machine still holds, and disconnect."""
        for task in (self._heartbeat, self._listener):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._running and self.error is None:
            held = sorted(set(self._running.values()))
            given = await self._call(RELEASE, self.options.machine, *held)
            if given:
                self.events.append(f"gave {given} unfinished test(s) back to the queue")
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- helpers --------------------------------------------------------------------------

    async def _check_finished(self) -> None:
        meta = await self._call_raw("hmget", self.keys["meta"], "total", "stopped")
        results = await self._call_raw("hlen", self.keys["results"])
        leases = await self._call_raw("zcard", self.keys["leases"])
        if self.error is not None or meta is None:
            return
        total, stopped = int(meta[0] or 0), meta[1] == "1"
        if int(results or 0) >= total or (stopped and not leases):
            self._finished = True

    async def _renew_forever(self) -> None:
        first_seen = time.time()
        while True:
            await asyncio.sleep(self.options.lease / 3)
            seen = {
                "host": socket.gethostname(), "pid": os.getpid(),
                "first_seen": first_seen, "last_seen": time.time(),
            }  # fmt: skip
            await self._call_raw(
                "hset", self.keys["machines"], self.options.machine, json.dumps(seen)
            )
            held = sorted(set(self._running.values()))
            if held:
                lost = await self._call(RENEW, self.options.machine, self._lease_ms, *held)
                for test_id in lost or []:
                    self.events.append(f"{test_id}: this machine's lease ran out while it ran")
            if self.error is not None:
                return

    async def _listen(self) -> None:
        """Turn the build's notifications into :attr:`_news` (best effort: polling remains)."""
        assert self._client is not None
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys["meta"])
            while True:
                message = await pubsub.get_message(timeout=self.poll)
                if message is not None:
                    self._news.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            return  # the connection is gone: the next call says so
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _call(self, script: str, *args: Any) -> Any:
        assert self._client is not None
        if self.error is not None:
            return None
        try:
            return await self._client.eval(script, len(KEYS), *self.keys.values(), *args)
        except Exception as error:  # redis.RedisError and OSError: the connection is gone
            self._lose(error)
            return None

    async def _call_raw(self, command: str, *args: Any) -> Any:
        assert self._client is not None
        if self.error is not None:
            return None
        try:
            return await getattr(self._client, command)(*args)
        except Exception as error:
            self._lose(error)
            return None

    def _lose(self, error: BaseException) -> None:
        if self.error is None:
            self.error = f"lost the connection to Redis at {self.options.where}: {error}"


# --- the build's results: the report, and the flow into a machine's cache -----------------------


@dataclass(frozen=True)
class BuildState:
    """Everything Redis holds about a build's results."""

    total: int
    order: list[str]
    files: dict[str, str]
    results: dict[str, str]
    detail: dict[str, dict[str, Any]]
    history: dict[str, list[dict[str, Any]]]
    machines: dict[str, dict[str, Any]]
    stopped: bool
    leased: int

    @property
    def complete(self) -> bool:
        return len(self.results) >= self.total or (self.stopped and not self.leased)


def read_build(client: redis.Redis, build: str) -> BuildState | None:
    """The build's state, or None if Redis knows no such build."""
    keys = keys_of(build)
    meta = client.hgetall(keys["meta"])
    if not meta:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.lrange(keys["order"], 0, -1)
    pipe.hgetall(keys["files"])
    pipe.hgetall(keys["results"])
    pipe.hgetall(keys["detail"])
    pipe.hgetall(keys["history"])
    pipe.hgetall(keys["machines"])
    pipe.zcard(keys["leases"])
    order, files, results, detail, history, machines, leased = pipe.execute()
    return BuildState(
        total=int(meta.get("total", 0)),
        order=list(order),
        files=dict(files),
        results=dict(results),
        detail={k: _json_object(v) for k, v in detail.items()},
        history={k: _json_list(v) for k, v in history.items()},
        machines={k: _json_object(v) for k, v in machines.items()},
        stopped=meta.get("stopped") == "1",
        leased=int(leased),
    )


def wait_for_build(
    client: redis.Redis, options: QueueOptions, timeout: float, poll: float = 1.0
) -> BuildState:
    """Poll until every test of the build has a result, or ``timeout`` passes."""
    module = _redis_module()
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = read_build(client, options.build)
        except module.RedisError as error:
            raise InfrastructureError(f"Redis at {options.where} failed: {error}") from None
        if state is None:
            # The report may start before any machine has filled the queue.
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"no machine started build {options.build} at {options.where} "
                    f"within {timeout:g} s"
                )
        elif state.complete or time.monotonic() >= deadline:
            return state
        time.sleep(poll)


def build_summary(state: BuildState, build: str, *, waited: float) -> RunSummary:
    """The build's run summary, as ``testpool report`` writes it."""
    results: list[TestResult] = []
    starts: list[float] = []
    for test_id in state.order:
        status_text = state.results.get(test_id)
        detail = state.detail.get(test_id, {})
        attempts = tuple(_attempt(a) for a in state.history.get(test_id, []))
        if status_text is None:
            status = Status.NOT_RUN
            message = "stopped: --max-failures reached" if state.stopped else "no result yet"
        else:
            status = Status(status_text)
            message = str(detail.get("message", ""))
        results.append(
            TestResult(
                id=test_id,
                file=state.files.get(test_id, str(detail.get("file", ""))),
                status=status,
                duration=float(detail.get("duration", 0.0) or 0.0),
                worker=detail.get("worker") if isinstance(detail.get("worker"), int) else None,
                attempts=attempts,
                message=message,
                origin=str(detail.get("origin", "")),
            )
        )
    for info in state.machines.values():
        if isinstance(info.get("first_seen"), int | float):
            starts.append(float(info["first_seen"]))
    missing = [r.id for r in results if r.status is Status.NOT_RUN and not state.stopped]
    error = ""
    if missing:
        error = (
            f"{len(missing)} test(s) of build {build} have no result after waiting "
            f"{waited:g} s (first: {missing[0]})"
        )
    ends = [
        float(i["last_seen"])
        for i in state.machines.values()
        if isinstance(i.get("last_seen"), int | float)
    ]
    return RunSummary(
        run_id=build,
        results=results,
        wall_time=(max(ends) - min(starts)) if starts and ends else 0.0,
        workers=0,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(min(starts)))
        if starts
        else "",
        started_unix=min(starts) if starts else 0.0,
        error=error,
        error_exit=ExitCode.INFRASTRUCTURE if error else 0,
        part={"kind": "queue", "build": build},
        parts=[{"origin": name, **info} for name, info in sorted(state.machines.items())],
    )


def cache_entries(state: BuildState, skip_origin: str = "") -> dict[str, dict[str, Any]]:
    """The build's final results as cache entries' raw fields, keyed by test id: what each
    machine learns from the others (``skip_origin``: this machine's own, recorded already)."""
    found: dict[str, dict[str, Any]] = {}
    for test_id, status in state.results.items():
        detail = state.detail.get(test_id, {})
        inputs = detail.get("inputs")
        if status == "cached" or not isinstance(inputs, dict) or not inputs:
            continue
        if skip_origin and detail.get("origin") == skip_origin:
            continue
        found[test_id] = {
            "status": status,
            "duration": detail.get("duration", 0.0),
            "ran_at": detail.get("ran_at", ""),
            "inputs": inputs,
        }
    return found


def _attempt(data: Mapping[str, Any]) -> Attempt:
    try:
        return Attempt(
            worker=int(data.get("worker", -1)),
            status=Status(data.get("status", "error")),
            duration=float(data.get("duration", 0.0)),
            started=float(data.get("started", 0.0)),
            finished=float(data.get("finished", 0.0)),
            message=str(data.get("message", "")),
            origin=str(data.get("origin", "")),
        )
    except (ValueError, TypeError):
        return Attempt(-1, Status.ERROR, 0.0, 0.0, 0.0, "unreadable attempt record")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    # Lua's cjson writes an empty list as {}.
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
