"""The HTML dashboard: token via header or ?token=, sites and counters, everything escaped."""

from __future__ import annotations

import helpers
import httpx
import pytest


class TestDashboard:
    """GET /dashboard."""

    def test_needs_a_token(self, anon: httpx.Client) -> None:
        response = anon.get("/dashboard")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("where", ["header", "query"])
    def test_wrong_token_is_403(self, anon: httpx.Client, where: str) -> None:
        if where == "header":
            response = anon.get("/dashboard", headers={"Authorization": "Bearer nope"})
        else:
            response = anon.get("/dashboard", params={"token": "nope"})
        assert response.status_code == 403

    def test_bearer_header_works(self, api: httpx.Client) -> None:
        response = api.get("/dashboard")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>Dashboard</h1>" in response.text

    def test_token_query_param_works(self, anon: httpx.Client) -> None:
        # For opening the page in a browser, which can't send a bearer header.
        response = anon.get("/dashboard", params={"token": helpers.api_token()})
        assert response.status_code == 200
        assert "<h1>Dashboard</h1>" in response.text

    def test_lists_a_new_site(self, api: httpx.Client, make_site: helpers.SiteFactory) -> None:
        site = make_site()
        page = api.get("/dashboard").text
        assert f'<td class="name">{site["name"]}</td>' in page
        assert f'<td class="url">{site["url"]}</td>' in page

    def test_deleted_site_disappears(
        self, api: httpx.Client, make_site: helpers.SiteFactory
    ) -> None:
        site = make_site()
        api.delete(f"/api/sites/{site['id']}")
        assert site["name"] not in api.get("/dashboard").text

    def test_site_name_is_html_escaped(
        self, api: httpx.Client, make_site: helpers.SiteFactory, unique_name: str
    ) -> None:
        site = make_site(name=f'<b>{unique_name}</b> & "friends"')
        page = api.get("/dashboard").text
        assert f"&lt;b&gt;{unique_name}&lt;/b&gt; &amp; &quot;friends&quot;" in page
        assert f"<b>{unique_name}" not in page
        assert site["name"] == f'<b>{unique_name}</b> & "friends"'  # stored as given

    def test_url_is_html_escaped(
        self, api: httpx.Client, make_site: helpers.SiteFactory, unique_name: str
    ) -> None:
        url = f"https://{unique_name}.example.test/?a=1&b=<script>"
        make_site(url=url)
        page = api.get("/dashboard").text
        assert f"https://{unique_name}.example.test/?a=1&amp;b=&lt;script&gt;" in page
        assert "<script>" not in page

    def test_shows_counters(self, api: httpx.Client, unique_name: str) -> None:
        name = unique_name.replace("-", "_")
        api.post(f"/api/stats/{name}/increment", json={"by": 7})
        page = api.get("/dashboard").text
        assert f'<td class="counter">{name}</td><td class="value">7</td>' in page

    def test_shows_current_counter_values(self, api: httpx.Client) -> None:
        value = api.post("/api/stats/page_views/increment").json()["value"]
        page = api.get("/dashboard").text
        assert f'<td class="counter">page_views</td><td class="value">{value}</td>' in page

    def test_broken_data_is_a_500_page(self, api: httpx.Client) -> None:
        with helpers.preserved(helpers.SITES_FILE) as path:
            helpers.write_file(path, "[ <oops>")
            response = api.get("/dashboard")
            assert response.status_code == 500
            assert response.headers["content-type"].startswith("text/html")
            assert "sites.jsonc is corrupt" in response.text
        assert api.get("/dashboard").status_code == 200
