"""A real headless Chromium for testpool's own tests, driven over the DevTools protocol.

``Browser`` starts Debian's ``chromium`` with a fresh profile, no sandbox (CI runs as root)
and nothing that reaches the network on its own, connects to its DevTools websocket, and opens
pages from disk. :meth:`Browser.open` loads a page and returns what its console said: every
``console.error``, uncaught exception and browser-side error (a resource the page's CSP
refused, a failed load) is in ``Page.errors``, so a test can require that there is none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from support import wait_until
from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """What loading a page showed: its console errors, and every console message."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class Browser:
    def __init__(self, binary: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="testpool-chromium-"))
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self._next_id = 0
        self._socket: ClientConnection | None = None
        self._closing = contextlib.ExitStack()
        try:
            port = wait_until(self._port, timeout=60, what="chromium's DevTools port")
            self._socket = self._closing.enter_context(
                connect(self._page_socket(port), max_size=None, open_timeout=30)
            )
        except BaseException:
            self.close()
            raise

    def _port(self) -> int | None:
        assert self.process.poll() is None, "chromium exited at start"
        try:
            lines = (self.profile / "DevToolsActivePort").read_text().splitlines()
        except FileNotFoundError:
            return None
        return int(lines[0]) if len(lines) >= 2 else None

    def _page_socket(self, port: int) -> str:
        def page() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                targets = json.load(answer)
            return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

        return str(wait_until(page, timeout=30, what="chromium's first tab"))

    # --- the protocol --------------------------------------------------------------------

    def _send(self, method: str, **params: Any) -> int:
        assert self._socket is not None
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self._socket is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("chromium did not answer in time")
        return dict(json.loads(self._socket.recv(timeout=left)))

    def call(
        self, method: str, timeout: float = 30, page: Page | None = None, **params: Any
    ) -> dict[str, Any]:
        """Send one command and return its result (events meanwhile go to ``page``, if given,
        else are dropped)."""
        wanted = self._send(method, **params)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if page is not None:
                self._note(message, page)
            if message.get("id") == wanted:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def open(self, path: Path, timeout: float = 60) -> Page:
        """Load ``path`` and collect what the console says until the page has loaded and its
        script has run (the report sets ``data-ready`` on <html> at the end of its script; a
        page whose script fails never does, which is an error too)."""
        page = Page()
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(domain)
        wanted = self._send("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        loaded = False
        while not loaded:
            message = self._receive(deadline)
            if message.get("id") == wanted and "error" in message:
                raise AssertionError(f"navigation failed: {message['error']}")
            self._note(message, page)
            loaded = message.get("method") == "Page.loadEventFired"
        # The answer to this question comes after every message the page sent before it.
        if self.evaluate("document.documentElement.getAttribute('data-ready')", page) != "1":
            page.errors.append("the page's script did not finish (data-ready is not set)")
        return page

    @staticmethod
    def _note(message: dict[str, Any], page: Page) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            page.messages.append(f"{params['type']}: {text}")
            if params["type"] in ("error", "assert"):
                page.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            described = details.get("exception", {}).get("description", details.get("text"))
            page.errors.append(f"exception: {described}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            page.messages.append(f"{entry['level']}: {entry['text']}")
            if entry["level"] == "error":
                page.errors.append(f"{entry['source']}: {entry['text']}")

    def evaluate(self, expression: str, page: Page | None = None) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only); console
        messages that arrive meanwhile go to ``page``."""
        result = self.call("Runtime.evaluate", page=page, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        import base64

        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    # --- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop chromium (its whole process group) and remove its profile; never raises."""
        with contextlib.suppress(Exception):
            self._closing.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # helpers left in the group
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def page_data(report_html: Path) -> dict[str, Any]:
    """The data a report.html embeds for its script (the timeline, the tests, the failures)."""
    import re

    found = re.search(
        r'<script type="application/json" id="testpool-data">(.*?)</script>',
        report_html.read_text(),
    )
    assert found is not None, f"no data in {report_html}"
    return dict(json.loads(found.group(1)))
