"""What code sees of the per-worker variables before any worker exists: loud stand-ins.

pytest imports the test modules while it collects: once to list the tests and, in session
mode, once more in the process every worker's pytest is forked from. A module that reads
``TEST_BASE_URL`` at import (``BASE = os.environ.get("TEST_BASE_URL", "http://localhost:8888")``)
reads it there, before any worker exists, and keeps that value on every worker. Left alone it
would fall back to a default -- or to a developer's own exported value -- and could pass
against the wrong server. While collecting, testpool therefore sets each per-worker variable to
a value that cannot reach anything and names the cause wherever it is printed:

- ``TEST_BASE_URL``: a host under ``.invalid`` (reserved, never resolves, RFC 6761);
- ``PORT``: ``0``, where no server can listen (it still parses as a number);
- ``DATA_DIR``: a path below ``/dev/null``, which no one can create or read;
- ``API_TOKEN``: a token no server accepts -- unless the config's ``env`` table or the secrets
  set it, since then every worker gets that same value;
- ``TESTPOOL_WORKER`` is removed: its absence means "not in a worker".

Called by the pytest runner (discovery) and the run (the environment of pytest's zygote).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

# Also in testpool.pytest_plugin, which recognises the stand-ins by it (it imports no testpool).
COLLECTION_MARK = "testpool-collection-time"
STAND_INS = {
    "TEST_BASE_URL": f"http://{COLLECTION_MARK}.invalid",
    "PORT": "0",
    "DATA_DIR": f"/dev/null/{COLLECTION_MARK}",
    "API_TOKEN": COLLECTION_MARK,
}
WORKER_INDEX = "TESTPOOL_WORKER"


def collection_env(env: Mapping[str, str], *, configured: Collection[str]) -> dict[str, str]:
    """``env`` as code that runs before any worker exists should see it.

    ``configured`` are the names set by the config's ``env`` table and the secrets: an
    ``API_TOKEN`` among them is the same on every worker, so it is kept.
    """
    collecting = {name: value for name, value in env.items() if name != WORKER_INDEX}
    for name, value in STAND_INS.items():
        if name == "API_TOKEN" and name in configured:
            continue
        collecting[name] = value
    return collecting
