"""Example dev server for testpool's bundled e2e suite: sites, counters, a scraper, a dashboard.

Standard library only. Run from the repo root::

    PORT=8000 DATA_DIR=/some/dir API_TOKEN=secret python e2e/app/server.py

All state lives in two files in ``DATA_DIR`` (``sites.jsonc`` and ``stats.json``), so a test
runner can give every worker its own copy and look at the files directly.
"""

from __future__ import annotations

import hmac
import html
import io
import json
import os
import re
import secrets
import signal
import socketserver
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, unquote, urldefrag, urljoin, urlsplit

# The script's folder is on sys.path when run as a script, except under `python -I`/-P.
_APP_DIR = Path(__file__).resolve().parent
if str(_APP_DIR) not in sys.path:
    sys.path.insert(0, str(_APP_DIR))

import jsonc  # noqa: E402  (needs the sys.path line above)

if TYPE_CHECKING:
    from types import FrameType

SITES_FILE = "sites.jsonc"
STATS_FILE = "stats.json"
PAGES_DIR = _APP_DIR / "pages"
HOST = "127.0.0.1"
MAX_BODY = 1 << 20
MAX_PAGE = 2 << 20
SCRAPE_TIMEOUT = 5.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
COUNTER_NAME = re.compile(r"[a-z0-9_]{1,40}")
PAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.html")
# Letters/digits, allowing inner hyphens and apostrophes ("end-to-end", "don't"); bare
# punctuation between tags is not a word.
WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

JSON = dict[str, Any]


class HttpError(Exception):
    """A request that ends in an error response with a JSON ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def data_error(name: str, reason: str | None = None) -> HttpError:
    """The 500 for a data file that is missing (``reason`` None) or unreadable."""
    if reason is None:
        return HttpError(500, f"{name} is missing from DATA_DIR")
    return HttpError(500, f"{name} is corrupt: {reason}")


# --------------------------------------------------------------------------- data files


class Store:
    """The two data files. Every read-modify-write holds ``lock``; every write is atomic."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock = threading.Lock()

    # -- reading

    def _read_text(self, name: str) -> str:
        try:
            return (self.data_dir / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise data_error(name) from None
        except UnicodeDecodeError as exc:
            raise data_error(name, f"not UTF-8 ({exc.reason})") from None
        except OSError as exc:
            raise data_error(name, exc.strerror or str(exc)) from None

    def _sites_text(self) -> tuple[str, list[JSON]]:
        text = self._read_text(SITES_FILE)
        try:
            value = jsonc.loads(text)
            if not isinstance(value, list):
                raise jsonc.JsoncError("the top-level value is not an array")
            if not all(isinstance(site, dict) for site in value):
                raise jsonc.JsoncError("every site must be an object")
            # Checked before any edit so a splice never lands in a file it can't parse.
            jsonc.scan_array(text)
        except jsonc.JsoncError as exc:
            raise data_error(SITES_FILE, str(exc)) from None
        return text, value

    def _stats(self) -> dict[str, int]:
        text = self._read_text(STATS_FILE)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            raise data_error(STATS_FILE, reason) from None
        if not isinstance(value, dict):
            raise data_error(STATS_FILE, "the top-level value is not an object")
        for key, count in value.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise data_error(STATS_FILE, f"counter {key!r} is not an integer")
        return value

    def sites(self) -> list[JSON]:
        """All sites, in file order."""
        with self.lock:
            return self._sites_text()[1]

    def stats(self) -> dict[str, int]:
        """All counters."""
        with self.lock:
            return self._stats()

    # -- writing

    def _write(self, name: str, text: str) -> None:
        """Replace ``name`` atomically: readers see the old file or the new one, never half."""
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=f".{name}.", suffix=".tmp")
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            tmp_path.replace(self.data_dir / name)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def _increment(self, name: str, by: int) -> int:
        counters = self._stats()
        counters[name] = counters.get(name, 0) + by
        self._write(STATS_FILE, json.dumps(counters, indent=2, sort_keys=True) + "\n")
        return counters[name]

    def increment(self, name: str, by: int = 1) -> int:
        """Add ``by`` to counter ``name`` (created at 0) and return the new value."""
        with self.lock:
            return self._increment(name, by)

    def bump(self, name: str) -> None:
        """Count an event as a side effect; a broken stats.json must not undo the event."""
        try:
            self.increment(name)
        except HttpError as exc:
            log(f"could not count {name!r}: {exc.message}")

    def add_site(self, name: str, url: str) -> JSON:
        """Append a new site, keeping every comment in sites.jsonc."""
        with self.lock:
            text, sites = self._sites_text()
            if any(site.get("url") == url for site in sites):
                raise HttpError(409, f"a site with url {url!r} already exists")
            taken = {site.get("id") for site in sites}
            site_id = secrets.token_hex(4)
            while site_id in taken:
                site_id = secrets.token_hex(4)
            site: JSON = {
                "id": site_id,
                "name": name,
                "url": url,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._write(SITES_FILE, jsonc.append_element(text, site))
        self.bump("sites_created")
        return site

    def delete_site(self, site_id: str) -> bool:
        """Remove the site with ``site_id``; False if there is none."""
        with self.lock:
            text, sites = self._sites_text()
            for index, site in enumerate(sites):
                if site.get("id") == site_id:
                    self._write(SITES_FILE, jsonc.remove_element(text, index))
                    return True
            return False


# --------------------------------------------------------------------------- scraping


class PageParser(HTMLParser):
    """Collects the bits of an HTML page that /api/scrape reports."""

    SKIP_TEXT = frozenset({"script", "style", "noscript", "template", "head", "title"})
    HEADINGS = {f"h{level}": level for level in range(1, 7)}

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.title: str | None = None
        self.description: str | None = None
        self.headings: list[JSON] = []
        self.links: list[str] = []
        self.word_count = 0
        self._open: list[str] = []  # elements whose text we are inside of, innermost last
        self._title_parts: list[str] | None = None
        self._heading: tuple[int, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "body" and "head" in self._open:
            # Pages that never close <head> still have a body worth counting.
            self._open.remove("head")
        if tag == "meta" and attributes.get("name", "").lower() == "description":
            if self.description is None:
                self.description = _squash(attributes.get("content", ""))
        elif tag == "a" and "href" in attributes:
            self._add_link(attributes["href"])
        elif tag == "title" and self.title is None:
            self._title_parts = []
        elif tag in self.HEADINGS:
            self._heading = (self.HEADINGS[tag], [])
        if tag in self.SKIP_TEXT:
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title_parts is not None:
            self.title = _squash("".join(self._title_parts))
            self._title_parts = None
        elif tag in self.HEADINGS and self._heading is not None:
            level, parts = self._heading
            self.headings.append({"level": level, "text": _squash("".join(parts))})
            self._heading = None
        if tag in self._open:
            # Close the innermost match; html.parser does no tree repair for us.
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag)]

    def handle_data(self, data: str) -> None:
        if self._title_parts is not None:
            self._title_parts.append(data)
        if self._heading is not None:
            self._heading[1].append(data)
        if not self._open:
            self.word_count += len(WORD.findall(data))

    def _add_link(self, href: str) -> None:
        href = href.strip()
        if not href or href.startswith("#"):
            return  # in-page anchors are not links to another page
        absolute, _fragment = urldefrag(urljoin(self.base_url, href))
        if urlsplit(absolute).scheme in ("http", "https") and absolute not in self.links:
            self.links.append(absolute)


def _squash(text: str) -> str:
    return " ".join(text.split())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could point off-box; treat it as the non-200 it is instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies: a proxy from the environment must not see (or break) local-only fetches.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def check_scrape_url(url: object) -> str:
    """The URL if it is http:// on this machine, else a 400."""
    if not isinstance(url, str) or not url.strip():
        raise HttpError(400, "'url' must be a non-empty string")
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018  (raises on a bad port, which is all we want here)
    except ValueError:
        raise HttpError(400, "only local URLs can be scraped") from None
    if parts.scheme != "http" or (parts.hostname or "").lower() not in LOCAL_HOSTS:
        raise HttpError(400, "only local URLs can be scraped")
    return url.strip()


def scrape(url: str) -> JSON:
    """Fetch a local page and summarise it."""
    request = urllib.request.Request(url, headers={"User-Agent": "testpool-example-scraper"})
    try:
        with _OPENER.open(request, timeout=SCRAPE_TIMEOUT) as response:
            status = response.status
            content_type = response.headers.get_content_type()
            charset = response.headers.get_content_charset() or "utf-8"
            body = response.read(MAX_PAGE)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise HttpError(502, f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HttpError(502, f"could not fetch {url}: {reason}") from None
    if status != 200:
        raise HttpError(502, f"{url} answered HTTP {status}")
    if content_type not in HTML_TYPES:
        raise HttpError(422, f"{url} is not an HTML page (Content-Type {content_type})")
    try:
        page = body.decode(charset, errors="replace")
    except LookupError:
        page = body.decode("utf-8", errors="replace")
    parser = PageParser(url)
    parser.feed(page)
    parser.close()
    return {
        "url": url,
        "status": status,
        "title": parser.title,
        "description": parser.description,
        "headings": parser.headings,
        "links": parser.links,
        "word_count": parser.word_count,
    }


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Config:
    """Settings from the environment."""

    port: int
    data_dir: Path
    token: str


class AppServer(ThreadingHTTPServer):
    """The HTTP server plus the app state its handlers need."""

    daemon_threads = True  # idle keep-alive connections must not hold up shutdown

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.data_dir)
        super().__init__((HOST, config.port), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall start-up
        # for seconds on machines with slow or no DNS; the name is only cosmetic.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]


Route = Callable[["Handler", list[str]], None]


class Handler(BaseHTTPRequestHandler):
    """One request: authenticate, route, answer with JSON (or HTML for pages and dashboard)."""

    protocol_version = "HTTP/1.1"
    server_version = "testpool-example/1.0"
    timeout = 30  # seconds an idle keep-alive connection may hold a thread
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms to each
    # keep-alive response.
    disable_nagle_algorithm = True

    server: AppServer
    body: bytes  # the request body, read before routing
    route_path: str  # the path without its query string
    query: dict[str, list[str]]

    # -- plumbing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        self.body = b""
        parts = urlsplit(self.path)
        self.route_path = parts.path
        self.query = parse_qs(parts.query)
        try:
            self.body = self._read_body()
            self._route(method, [unquote(p) for p in parts.path.split("/")[1:]])
        except HttpError as exc:
            self.send_json(exc.status, {"error": exc.message}, exc.headers)
        except Exception as exc:
            # Never a traceback page: log it, answer a plain 500.
            log(f"internal error on {method} {self.route_path}: {exc!r}")
            traceback.print_exc(file=sys.stderr)
            self.send_json(500, {"error": "internal server error"})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, "request body too large")
        # Always drained, even for requests we reject, so a kept-alive connection stays in step.
        return self.rfile.read(length) if length else b""

    def json_body(self, *, optional: bool = False) -> JSON:
        """The request body as a JSON object (``{}`` if empty and ``optional``)."""
        if not self.body.strip():
            if optional:
                return {}
            raise HttpError(400, "request body must be a JSON object")
        try:
            value = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, "request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise HttpError(400, "request body must be a JSON object")
        return value

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with ``payload`` as JSON."""
        body = (json.dumps(payload) + "\n").encode()
        self.send_body(status, body, "application/json", headers)

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer with ``body``; HEAD gets the headers only."""
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, 501, ...) as JSON, like ours.
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        with suppress(OSError):  # the client may already be gone
            self.send_json(code, {"error": message or phrase})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        code_text = code.value if isinstance(code, HTTPStatus) else code
        # Never log the dashboard's ?token=; a malformed request has no method or path.
        path = getattr(self, "path", "") or self.requestline
        path = re.sub(r"(?<=[?&]token=)[^&]*", "***", path)
        log(f"{self.command or '-'} {path} {code_text}")

    def log_message(self, format: str, *args: Any) -> None:
        log(format % args)

    # -- auth

    def require_token(self, *, allow_query: bool = False) -> None:
        """Raise the 401 (no token) or 403 (wrong token) unless the request carries API_TOKEN."""
        expected = self.server.config.token.encode()
        header = self.headers.get("Authorization")
        supplied: str | None = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                supplied = value.strip()
        if supplied is None and allow_query:
            tokens = self.query.get("token")
            supplied = tokens[0] if tokens else None
        if supplied is None:
            raise HttpError(
                401,
                "missing bearer token (send 'Authorization: Bearer <API_TOKEN>')",
                {"WWW-Authenticate": 'Bearer realm="testpool-example"'},
            )
        if not hmac.compare_digest(supplied.encode(), expected):
            raise HttpError(403, "invalid token")

    # -- routing

    def _route(self, method: str, segments: list[str]) -> None:
        if segments and segments[0] == "api":
            self.require_token()
        routes = _match(segments)
        if routes is None:
            raise HttpError(404, f"no route for {self.route_path}")
        if method == "HEAD" and "GET" in routes:
            method = "GET"
        handler = routes.get(method)
        if handler is None:
            allowed = ", ".join(sorted(routes))
            raise HttpError(405, f"{method} is not allowed here", {"Allow": allowed})
        handler(self, segments)

    # -- endpoints

    def health(self, _segments: list[str]) -> None:
        self.send_json(200, {"status": "ok"})

    def page(self, segments: list[str]) -> None:
        name = segments[1]
        path = PAGES_DIR / name
        if not PAGE_NAME.fullmatch(name) or not path.is_file():
            raise HttpError(404, f"no page {name!r}")
        self.send_body(200, path.read_bytes(), "text/html; charset=utf-8")

    def list_sites(self, _segments: list[str]) -> None:
        self.send_json(200, self.server.store.sites())

    def create_site(self, _segments: list[str]) -> None:
        body = self.json_body()
        name = body.get("name")
        url = body.get("url")
        if not isinstance(name, str) or not name.strip():
            raise HttpError(400, "'name' must be a non-empty string")
        if len(name) > 200:
            raise HttpError(400, "'name' must be at most 200 characters")
        if not isinstance(url, str) or not _is_web_url(url):
            raise HttpError(400, "'url' must be an http:// or https:// URL")
        self.send_json(201, self.server.store.add_site(name.strip(), url.strip()))

    def get_site(self, segments: list[str]) -> None:
        for site in self.server.store.sites():
            if site.get("id") == segments[2]:
                self.send_json(200, site)
                return
        raise HttpError(404, f"no site with id {segments[2]!r}")

    def delete_site(self, segments: list[str]) -> None:
        if not self.server.store.delete_site(segments[2]):
            raise HttpError(404, f"no site with id {segments[2]!r}")
        self.send_body(204, b"", "")

    def get_stats(self, _segments: list[str]) -> None:
        self.send_json(200, self.server.store.stats())

    def increment(self, segments: list[str]) -> None:
        name = segments[2]
        if not COUNTER_NAME.fullmatch(name):
            raise HttpError(400, "counter names are 1-40 characters of a-z, 0-9 and _")
        by = self.json_body(optional=True).get("by", 1)
        if isinstance(by, bool) or not isinstance(by, int):
            raise HttpError(400, "'by' must be an integer")
        self.send_json(200, {"name": name, "value": self.server.store.increment(name, by)})

    def scrape(self, _segments: list[str]) -> None:
        url = check_scrape_url(self.json_body().get("url"))
        result = scrape(url)
        self.server.store.bump("scrapes")
        self.send_json(200, result)

    def dashboard(self, _segments: list[str]) -> None:
        self.require_token(allow_query=True)
        store = self.server.store
        try:
            page = render_dashboard(store.sites(), store.stats())
            status = 200
        except HttpError as exc:
            page = render_page("Dashboard unavailable", f"<p>{html.escape(exc.message)}</p>")
            status = exc.status
        self.send_body(status, page.encode(), "text/html; charset=utf-8")


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in url.strip()


_Routes = dict[str, Route]


def _match(segments: list[str]) -> _Routes | None:
    """The method table for a path, or None for an unknown path."""
    match segments:
        case ["health"]:
            return {"GET": Handler.health}
        case ["dashboard"]:
            return {"GET": Handler.dashboard}
        case ["pages", _]:
            return {"GET": Handler.page}
        case ["api", "sites"]:
            return {"GET": Handler.list_sites, "POST": Handler.create_site}
        case ["api", "sites", site_id] if site_id:
            return {"GET": Handler.get_site, "DELETE": Handler.delete_site}
        case ["api", "stats"]:
            return {"GET": Handler.get_stats}
        case ["api", "stats", counter, "increment"] if counter:
            return {"POST": Handler.increment}
        case ["api", "scrape"]:
            return {"POST": Handler.scrape}
    return None


# --------------------------------------------------------------------------- HTML


def render_page(title: str, body: str) -> str:
    """A minimal HTML document; ``body`` must already be escaped."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def render_dashboard(sites: list[JSON], stats: dict[str, int]) -> str:
    """The dashboard: a table of sites and a table of counters, everything escaped."""
    site_rows = [
        _row(("name", str(site.get("name", ""))), ("url", str(site.get("url", ""))))
        for site in sites
    ]
    stat_rows = [
        _row(("counter", name), ("value", str(value))) for name, value in sorted(stats.items())
    ]
    body = "\n".join(
        [
            "<h1>Dashboard</h1>",
            f"<h2>Sites ({len(sites)})</h2>",
            '<table id="sites">',
            "<tr><th>Name</th><th>URL</th></tr>",
            *(site_rows or ['<tr><td colspan="2">No sites yet.</td></tr>']),
            "</table>",
            "<h2>Counters</h2>",
            '<table id="stats">',
            "<tr><th>Counter</th><th>Value</th></tr>",
            *(stat_rows or ['<tr><td colspan="2">No counters yet.</td></tr>']),
            "</table>",
        ]
    )
    return render_page("Dashboard", body)


def _row(*cells: tuple[str, str]) -> str:
    """One table row; each cell is (CSS class, raw text), escaped here."""
    tds = "".join(f'<td class="{cls}">{html.escape(text)}</td>' for cls, text in cells)
    return f"<tr>{tds}</tr>"


# --------------------------------------------------------------------------- main


def log(line: str) -> None:
    """One line to stdout, flushed at once: a test runner may be tailing it."""
    print(line, flush=True)


def fail(message: str) -> NoReturn:
    """Exit non-zero with a one-line message on stderr."""
    print(f"server.py: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def load_config(environ: Mapping[str, str]) -> Config:
    """Read PORT, DATA_DIR and API_TOKEN; any problem is fatal."""
    missing = [name for name in ("PORT", "DATA_DIR", "API_TOKEN") if not environ.get(name)]
    if missing:
        fail(f"missing required environment variable(s): {', '.join(missing)}")
    try:
        port = int(environ["PORT"])
    except ValueError:
        fail(f"PORT must be an integer, got {environ['PORT']!r}")
    if not 0 < port < 65536:
        fail(f"PORT must be between 1 and 65535, got {port}")
    data_dir = Path(environ["DATA_DIR"])
    if not data_dir.is_dir():
        fail(f"DATA_DIR {str(data_dir)!r} does not exist or is not a directory")
    return Config(port=port, data_dir=data_dir.resolve(), token=environ["API_TOKEN"])


@contextmanager
def stop_on_signals(server: AppServer) -> Iterator[None]:
    """Make SIGTERM and SIGINT end ``serve_forever`` cleanly."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        # shutdown() waits for serve_forever, which runs in this (the main) thread: call it
        # from another thread or it would wait for itself forever.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main() -> int:
    """Serve until SIGTERM or SIGINT."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    config = load_config(os.environ)
    try:
        server = AppServer(config)
    except OSError as exc:
        fail(f"cannot listen on {HOST}:{config.port}: {exc.strerror or exc}")
    with server, stop_on_signals(server):
        log(f"listening on http://{HOST}:{config.port}")
        # A short poll so shutdown() is noticed well within a second.
        server.serve_forever(poll_interval=0.1)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
