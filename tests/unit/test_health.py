"""wait_healthy with httpx's MockTransport: no server, real deadlines."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from testpool.errors import HealthTimeoutError, ServerExitedError
from testpool.health import wait_healthy


def client(statuses: list[int]) -> tuple[httpx.AsyncClient, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if not statuses:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(statuses.pop(0))

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), seen


def test_polls_until_200() -> None:
    http, seen = client([503, 503, 200])
    elapsed = asyncio.run(
        wait_healthy(
            http, "http://127.0.0.1:1/health", interval=0.01, timeout=5, is_alive=lambda: True
        )
    )
    assert len(seen) == 3 and elapsed >= 0


def test_connection_refused_is_retried() -> None:
    http, seen = client([])
    with pytest.raises(HealthTimeoutError, match=r"not healthy after 0\.2 s .*ConnectError"):
        asyncio.run(
            wait_healthy(http, "http://x/health", interval=0.05, timeout=0.2, is_alive=lambda: True)
        )
    assert len(seen) >= 3


def test_dead_server_fails_fast() -> None:
    http, seen = client([503] * 100)
    alive = iter([True, True, False])
    with pytest.raises(ServerExitedError):
        asyncio.run(
            wait_healthy(
                http, "http://x/health", interval=0.01, timeout=600, is_alive=lambda: next(alive)
            )
        )
    assert len(seen) == 2
