"""Who may call what: /api/ needs the bearer token, health and fixture pages do not."""

from __future__ import annotations

import helpers
import httpx
import pytest

PROTECTED = [
    ("GET", "/api/sites"),
    ("POST", "/api/sites"),
    ("GET", "/api/sites/seed0001"),
    ("DELETE", "/api/sites/seed0001"),
    ("GET", "/api/stats"),
    ("POST", "/api/stats/auth_probe/increment"),
    ("POST", "/api/scrape"),
    ("GET", "/api/no-such-endpoint"),  # unknown /api/ routes don't leak their 404 either
]
# Plain ids ("GET-api-sites"): "/" in a node id is awkward to pass around on command lines.
PROTECTED_IDS = [f"{method}-{path.strip('/').replace('/', '-')}" for method, path in PROTECTED]


class TestAuth:
    """Bearer-token checks."""

    def test_health_needs_no_auth(self, anon: httpx.Client) -> None:
        response = anon.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_fixture_pages_need_no_auth(self, anon: httpx.Client) -> None:
        response = anon.get("/pages/article.html")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<title>" in response.text

    @pytest.mark.parametrize(("method", "path"), PROTECTED, ids=PROTECTED_IDS)
    def test_missing_token_is_401(self, anon: httpx.Client, method: str, path: str) -> None:
        response = anon.request(method, path, json={"name": "x", "url": "https://x.test/"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]

    @pytest.mark.parametrize(("method", "path"), PROTECTED, ids=PROTECTED_IDS)
    def test_wrong_token_is_403(self, method: str, path: str) -> None:
        with helpers.client(token=helpers.api_token() + "-wrong") as wrong:
            response = wrong.request(method, path, json={"name": "x", "url": "https://x.test/"})
        assert response.status_code == 403
        assert response.json()["error"]

    @pytest.mark.parametrize(
        "header",
        ["Basic dXNlcjpwYXNz", "Bearer", "Bearertok", "Token abc"],
        ids=["basic", "bearer-no-token", "bearer-no-space", "other-scheme"],
    )
    def test_malformed_authorization_is_401(self, anon: httpx.Client, header: str) -> None:
        response = anon.get("/api/stats", headers={"Authorization": header})
        assert response.status_code == 401

    def test_scheme_is_case_insensitive(self, anon: httpx.Client) -> None:
        response = anon.get(
            "/api/stats", headers={"Authorization": f"bearer {helpers.api_token()}"}
        )
        assert response.status_code == 200

    def test_token_in_query_is_not_accepted_by_api(self, anon: httpx.Client) -> None:
        # Only the dashboard takes ?token= (it's opened in a browser); the API must not.
        response = anon.get("/api/stats", params={"token": helpers.api_token()})
        assert response.status_code == 401

    def test_rejected_write_changes_nothing(self, anon: httpx.Client, unique_name: str) -> None:
        counter = unique_name.replace("-", "_")
        before = helpers.read_stats()
        response = anon.post(f"/api/stats/{counter}/increment")
        assert response.status_code == 401
        with helpers.client(token="not-the-token") as wrong:
            assert wrong.post(f"/api/stats/{counter}/increment").status_code == 403
        # Tests on a worker run one at a time, so nothing else can have touched the file.
        assert helpers.read_stats() == before


class TestRouting:
    """Unknown paths and wrong methods answer JSON, not an HTML error page."""

    def test_unknown_route_is_404_json(self, anon: httpx.Client) -> None:
        response = anon.get("/no/such/page")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()

    def test_unknown_page_is_404(self, anon: httpx.Client) -> None:
        assert anon.get("/pages/no-such-page.html").status_code == 404
        assert anon.get("/pages/..%2Fserver.py").status_code == 404

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("PUT", "/api/sites", "GET, POST"),
            ("POST", "/api/stats", "GET"),
            ("GET", "/api/scrape", "POST"),
            ("GET", "/api/stats/anything/increment", "POST"),
            ("POST", "/health", "GET"),
        ],
        ids=["put-sites", "post-stats", "get-scrape", "get-increment", "post-health"],
    )
    def test_wrong_method_is_405_json(
        self, api: httpx.Client, method: str, path: str, allowed: str
    ) -> None:
        response = api.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert "error" in response.json()
