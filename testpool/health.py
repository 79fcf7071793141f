"""Wait for a dev server to answer its health check, on a deadline.

Called by the pool for every worker it starts or restarts, and after a test that timed out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from testpool.errors import HealthTimeoutError, ServerExitedError, WrongAddressError

# One probe may not hang longer than this even when the deadline is far away.
PROBE_TIMEOUT = 2.0
WAKE_SETTLE = 0.005


async def wait_healthy(
    client: httpx.AsyncClient,
    url: str,
    *,
    interval: float,
    timeout: float,
    is_alive: Callable[[], bool],
    wake: asyncio.Event | None = None,
    diagnose: Callable[[], str | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Poll ``url`` every ``interval`` seconds until it answers HTTP 200; return the time taken.

    ``wake``, when set, triggers an extra probe before the next tick (the pool sets it when
    the server prints something, which is usually "listening on …"): a server that is ready
    after 30 ms is seen after 30 ms, not at the next 200 ms tick.

    Raises :class:`ServerExitedError` as soon as ``is_alive()`` says the server is gone (no
    waiting out the timeout for a process that already died), :class:`WrongAddressError` as
    soon as ``diagnose()`` (asked after every failed probe) names a mistake, and
    :class:`HealthTimeoutError` when ``timeout`` passes, saying what the last probe got. The
    caller adds the worker's name and log tail to the message.
    """
    started = clock()
    deadline = started + timeout
    last_problem = "no answer yet"
    while True:
        if not is_alive():
            raise ServerExitedError("the server process exited before it became healthy")
        remaining = deadline - clock()
        if remaining <= 0:
            raise HealthTimeoutError(
                f"not healthy after {timeout:g} s (last probe: {last_problem})"
            )
        tick = clock()
        try:
            response = await client.get(url, timeout=min(PROBE_TIMEOUT, remaining))
        except httpx.TransportError as error:
            last_problem = type(error).__name__
        else:
            if response.status_code == 200:
                return clock() - started
            last_problem = answered(response)
        if diagnose is not None and (problem := diagnose()):
            raise WrongAddressError(problem)
        # Keep the cadence: the next probe starts `interval` after this one started.
        pause = min(interval - (clock() - tick), deadline - clock())
        if pause > 0:
            await _pause(pause, wake)


def answered(response: httpx.Response) -> str:
    """A health answer that is not 200, for the error message: a redirect shows where to."""
    path = response.request.url.raw_path.decode("ascii", "replace")
    text = f"{path} answered HTTP {response.status_code}"
    if response.is_redirect:
        where = response.headers.get("location", "")
        return (
            f"{text}, a redirect to {where}: health_path must answer 200 itself (testpool does "
            "not follow redirects)"
        )
    if response.status_code in (404, 405):
        return f"{text}: is health_path right?"
    return text


async def _pause(seconds: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(seconds)
        return
    wake.clear()
    try:
        await asyncio.wait_for(wake.wait(), seconds)
    except TimeoutError:
        return
    # Output often comes in bursts just before the socket is bound: give it a moment.
    await asyncio.sleep(min(WAKE_SETTLE, seconds))


async def probe(client: httpx.AsyncClient, url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """One health probe: does the server answer 200 right now?"""
    try:
        response = await client.get(url, timeout=timeout)
    except httpx.TransportError:
        return False
    return response.status_code == 200
