"""Telling a misconfigured server apart from a slow one, from where it listens."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from testpool.diagnosis import Listener, PortWatch, describe, timeout_hint
from testpool.errors import HealthTimeoutError, WrongAddressError
from testpool.health import wait_healthy


@pytest.mark.parametrize(
    "listeners",
    [
        [],  # not listening yet: maybe slow
        [Listener(9000, "127.0.0.1")],
        [Listener(9000, "0.0.0.0"), Listener(9229, "127.0.0.1")],
        [Listener(9000, "::")],
    ],
)
def test_listening_where_127_0_0_1_reaches_is_fine(listeners: list[Listener]) -> None:
    assert describe(listeners, 9000) is None


def test_another_port_and_another_address_are_named() -> None:
    assert describe([Listener(8888, "0.0.0.0")], 9000) == (
        "the server is listening on 8888, not 9000: does it read PORT? (or give it {port} in "
        "'server', 'env' or a 'files' template)"
    )
    assert "listening on 8888 and 9229, not 9000" in str(
        describe([Listener(9229, "::1"), Listener(8888, "::")], 9000)
    )
    assert describe([Listener(9000, "::1")], 9000) == (
        "the server listens on [::1]:9000, which 127.0.0.1:9000 does not reach: make it bind "
        "127.0.0.1 (or 0.0.0.0)"
    )
    assert timeout_hint([], 9000) == "the server listens on no port (it should listen on 9000)"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_port_watch_waits_a_grace_period_and_forgives_a_server_that_moves() -> None:
    clock = Clock()
    seen: list[list[Listener]] = [[Listener(9229, "127.0.0.1")]]
    looks = []

    def listeners() -> list[Listener]:
        looks.append(clock.now)
        return seen[0]

    watch = PortWatch(listeners, 9000, grace=2.0, interval=0.5, clock=clock)
    assert watch.check() is None  # wrong since 0.0
    clock.now = 0.2
    assert watch.check() is None and looks == [0.0], "at most every interval"
    clock.now = 1.0
    seen[0] = [Listener(9229, "127.0.0.1"), Listener(9000, "127.0.0.1")]
    assert watch.check() is None  # now right: the grace starts over
    seen[0] = [Listener(9229, "127.0.0.1")]
    for now in (1.5, 2.5, 3.4):
        clock.now = now
        assert watch.check() is None
    clock.now = 3.6
    assert watch.check() is None, "0.2 s after the last look: not looked at again"
    clock.now = 3.9  # 2.4 s of listening only elsewhere since 1.5
    assert "listening on 9229, not 9000" in str(watch.check())


def test_wait_healthy_gives_up_when_the_diagnosis_says_so() -> None:
    calls = iter([None, None, "it listens on 8888"])
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("no")))
    )
    with pytest.raises(WrongAddressError, match="it listens on 8888"):
        asyncio.run(
            wait_healthy(
                http, "http://x/health", interval=0.01, timeout=600, is_alive=lambda: True,
                diagnose=lambda: next(calls),
            )
        )  # fmt: skip


@pytest.mark.parametrize(
    ("response", "said"),
    [
        (
            httpx.Response(301, headers={"Location": "https://x/health/"}),
            "/health answered HTTP 301, a redirect to https://x/health/: health_path must "
            "answer 200 itself (testpool does not follow redirects)",
        ),
        (httpx.Response(404), "/health answered HTTP 404: is health_path right?"),
        (httpx.Response(503), "/health answered HTTP 503"),
    ],
)
def test_the_timeout_says_what_the_health_path_answered(
    response: httpx.Response, said: str
) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: response))
    with pytest.raises(HealthTimeoutError) as caught:
        asyncio.run(
            wait_healthy(http, "http://x/health", interval=0.05, timeout=0.2, is_alive=lambda: True)
        )
    assert caught.value.message.endswith(f"(last probe: {said})")
