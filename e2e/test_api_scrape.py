"""The scraper, pointed at fixture pages the same server serves (no internet needed)."""

from __future__ import annotations

import socket
from typing import Any

import helpers
import httpx
import pytest


def page(name: str) -> str:
    """The URL of a fixture page on this worker's server."""
    return f"{helpers.base_url()}/pages/{name}"


def scrape(api: httpx.Client, url: str) -> httpx.Response:
    """POST /api/scrape for ``url``."""
    return api.post("/api/scrape", json={"url": url})


def free_port() -> int:
    """A local port nothing is listening on (the OS just handed it out and we closed it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestApiScrape:
    """What a scrape extracts, what it refuses, and how it fails."""

    @pytest.fixture
    def article(self, api: httpx.Client) -> dict[str, Any]:
        response = scrape(api, page("article.html"))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def test_reports_url_and_status(self, article: dict[str, Any]) -> None:
        assert article["url"] == page("article.html")
        assert article["status"] == 200

    def test_extracts_title_and_description(self, article: dict[str, Any]) -> None:
        # Whitespace inside <title> is collapsed; entities are decoded.
        assert article["title"] == "A Field Guide to Parallel Tests"
        assert article["description"] == (
            "Why isolated workers make end-to-end suites fast & reliable."
        )

    def test_extracts_headings_in_order(self, article: dict[str, Any]) -> None:
        assert article["headings"] == [
            {"level": 1, "text": "Parallel tests"},
            {"level": 2, "text": "Isolated workers"},
            {"level": 2, "text": "Shared state & collisions"},
            {"level": 3, "text": "Further reading"},
        ]

    def test_links_are_absolute_and_unique(self, article: dict[str, Any]) -> None:
        # Relative links resolve against the page; fragments, in-page anchors, mailto: and
        # javascript: links are dropped; repeats are listed once.
        assert article["links"] == [
            page("links.html"),
            page("no-title.html"),
            "https://example.com/guide",
        ]

    def test_word_count_skips_head_and_scripts(self, article: dict[str, Any]) -> None:
        assert article["word_count"] == 59

    def test_page_without_title(self, api: httpx.Client) -> None:
        result = scrape(api, page("no-title.html")).json()
        assert result["title"] is None
        assert result["description"] is None
        assert result["headings"] == [{"level": 1, "text": "A page with no title"}]
        assert result["links"] == []

    def test_page_with_many_links(self, api: httpx.Client) -> None:
        result = scrape(api, page("links.html")).json()
        assert result["title"] == "Link index"
        assert len(result["links"]) == 25
        assert result["links"][0] == page("item-01.html")
        assert result["links"][-1] == page("item-25.html")

    def test_empty_page(self, api: httpx.Client) -> None:
        result = scrape(api, page("empty.html")).json()
        assert result["title"] == "Empty"
        assert (result["headings"], result["links"], result["word_count"]) == ([], [], 0)

    def test_localhost_name_is_allowed(self, api: httpx.Client) -> None:
        url = page("article.html").replace("127.0.0.1", "localhost")
        if "localhost" not in url:
            pytest.skip("TEST_BASE_URL does not use 127.0.0.1")
        response = scrape(api, url)
        assert response.status_code == 200
        assert response.json()["links"][0] == url.replace("article.html", "links.html")

    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com/",
            "http://example.com/",
            "http://10.0.0.1/",
            "http://127.0.0.1.example.com/",
            "http://127.0.0.1@example.com/",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
            "http://127.0.0.1:notaport/",
        ],
        ids=[
            "https-remote",
            "http-remote",
            "private-ip",
            "lookalike-host",
            "userinfo-trick",
            "https-local",
            "ftp",
            "file",
            "bad-port",
        ],
    )
    def test_non_local_url_is_400(self, api: httpx.Client, url: str) -> None:
        response = scrape(api, url)
        assert response.status_code == 400
        assert response.json() == {"error": "only local URLs can be scraped"}

    @pytest.mark.parametrize(
        "body", [{}, {"url": ""}, {"url": 5}], ids=["no-url", "empty-url", "url-not-string"]
    )
    def test_missing_url_is_400(self, api: httpx.Client, body: dict[str, Any]) -> None:
        assert api.post("/api/scrape", json=body).status_code == 400

    def test_unreachable_port_is_502(self, api: httpx.Client) -> None:
        response = scrape(api, f"http://127.0.0.1:{free_port()}/")
        assert response.status_code == 502
        assert response.json()["error"]

    def test_missing_page_is_502(self, api: httpx.Client) -> None:
        response = scrape(api, page("no-such-page.html"))
        assert response.status_code == 502
        assert "404" in response.json()["error"]

    def test_non_html_is_422(self, api: httpx.Client) -> None:
        # /health answers JSON: fetched fine, but not a page.
        response = scrape(api, f"{helpers.base_url()}/health")
        assert response.status_code == 422
        assert response.json()["error"]

    def test_scrape_counts_exactly_once(self, api: httpx.Client) -> None:
        before = helpers.counter("scrapes")
        assert scrape(api, page("article.html")).status_code == 200
        after = helpers.counter("scrapes")
        assert after == before + 1
        assert helpers.read_stats()["scrapes"] == after

    def test_failed_scrapes_are_not_counted(self, api: httpx.Client) -> None:
        before = helpers.counter("scrapes")
        assert scrape(api, "https://example.com/").status_code == 400
        assert scrape(api, page("no-such-page.html")).status_code == 502
        assert scrape(api, f"{helpers.base_url()}/health").status_code == 422
        assert helpers.counter("scrapes") == before
