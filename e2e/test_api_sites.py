"""The sites API, the sites.jsonc file behind it, and what happens when that file is broken."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import helpers
import httpx
import pytest
from helpers import SiteFactory

SITE_FIELDS = {"id", "name", "url", "created_at"}


class TestApiSites:
    """CRUD and validation through HTTP."""

    def test_create_returns_the_site(
        self, api: httpx.Client, make_site: SiteFactory, unique_name: str, unique_url: str
    ) -> None:
        site = make_site(name=unique_name, url=unique_url)
        assert set(site) == SITE_FIELDS
        assert site["name"] == unique_name
        assert site["url"] == unique_url
        assert re.fullmatch(r"[0-9a-f]{8}", site["id"])
        assert datetime.fromisoformat(site["created_at"]).tzinfo is not None

    def test_created_site_is_listed_and_fetchable(
        self, api: httpx.Client, make_site: SiteFactory
    ) -> None:
        site = make_site()
        listed = api.get("/api/sites")
        assert listed.status_code == 200
        assert site in listed.json()
        fetched = api.get(f"/api/sites/{site['id']}")
        assert fetched.status_code == 200
        assert fetched.json() == site

    def test_ids_are_unique(self, make_site: SiteFactory) -> None:
        ids = {make_site()["id"] for _ in range(5)}
        assert len(ids) == 5

    def test_name_is_trimmed(self, make_site: SiteFactory, unique_name: str) -> None:
        assert make_site(name=f"  {unique_name}\t")["name"] == unique_name

    def test_unknown_id_is_404(self, api: httpx.Client) -> None:
        response = api.get(f"/api/sites/no-such-{uuid.uuid4().hex[:8]}")
        assert response.status_code == 404
        assert "error" in response.json()

    def test_delete(self, api: httpx.Client, make_site: SiteFactory) -> None:
        site = make_site()
        response = api.delete(f"/api/sites/{site['id']}")
        assert response.status_code == 204
        assert response.content == b""
        assert api.get(f"/api/sites/{site['id']}").status_code == 404
        assert site["id"] not in {s["id"] for s in api.get("/api/sites").json()}
        assert api.delete(f"/api/sites/{site['id']}").status_code == 404

    def test_delete_leaves_other_sites(self, api: httpx.Client, make_site: SiteFactory) -> None:
        first, middle, last = make_site(), make_site(), make_site()
        assert api.delete(f"/api/sites/{middle['id']}").status_code == 204
        ids = [s["id"] for s in api.get("/api/sites").json()]
        assert first["id"] in ids
        assert last["id"] in ids
        assert ids.index(first["id"]) < ids.index(last["id"])

    @pytest.mark.parametrize(
        "payload",
        [
            {"url": "https://no-name.example.test/"},
            {"name": "", "url": "https://empty-name.example.test/"},
            {"name": "   ", "url": "https://blank-name.example.test/"},
            {"name": 42, "url": "https://number-name.example.test/"},
            {"name": "no url"},
            {"name": "ftp url", "url": "ftp://files.example.test/"},
            {"name": "relative url", "url": "/just/a/path"},
            {"name": "not a url", "url": "not a url"},
            {"name": "url is a list", "url": ["https://x.example.test/"]},
            ["name", "url"],
        ],
        ids=[
            "missing-name",
            "empty-name",
            "blank-name",
            "name-not-string",
            "missing-url",
            "ftp-url",
            "relative-url",
            "not-a-url",
            "url-not-string",
            "body-not-object",
        ],
    )
    def test_invalid_site_is_400(self, api: httpx.Client, payload: Any) -> None:
        before = api.get("/api/sites").json()
        response = api.post("/api/sites", json=payload)
        assert response.status_code == 400
        assert response.json()["error"]
        assert api.get("/api/sites").json() == before

    @pytest.mark.parametrize(
        "body", [b"{not json", b"", b'{"name": "x", "url": '], ids=["garbage", "empty", "truncated"]
    )
    def test_bad_json_is_400(self, api: httpx.Client, body: bytes) -> None:
        response = api.post(
            "/api/sites", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]

    def test_duplicate_url_is_409(self, api: httpx.Client, make_site: SiteFactory) -> None:
        site = make_site()
        response = api.post("/api/sites", json={"name": "again", "url": site["url"]})
        assert response.status_code == 409
        assert response.json()["error"]
        assert [s["url"] for s in helpers.read_sites()].count(site["url"]) == 1

    def test_create_counts_sites_created(self, make_site: SiteFactory) -> None:
        before = helpers.counter("sites_created")
        make_site()
        after = helpers.counter("sites_created")
        # Exact, not ">": another worker writing into this DATA_DIR would break it.
        assert after == before + 1
        assert helpers.read_stats()["sites_created"] == after


class TestSitesFile:
    """What the server leaves on disk: the site, and every comment that was already there."""

    def test_created_site_is_on_disk(self, make_site: SiteFactory) -> None:
        site = make_site()
        assert site in helpers.read_sites()

    def test_deleted_site_leaves_disk(self, api: httpx.Client, make_site: SiteFactory) -> None:
        site = make_site()
        api.delete(f"/api/sites/{site['id']}")
        assert site["id"] not in {s["id"] for s in helpers.read_sites()}
        assert site["id"] not in helpers.sites_text()

    def test_disk_matches_api(self, api: httpx.Client, make_site: SiteFactory) -> None:
        make_site()
        assert helpers.read_sites() == api.get("/api/sites").json()

    def test_comments_survive_create_and_delete(
        self, api: httpx.Client, make_site: SiteFactory
    ) -> None:
        # Works on the seed (which has comments) and on a bare "[]" (which has none).
        before = helpers.comments(helpers.sites_text())
        site = make_site()
        assert helpers.comments(helpers.sites_text()) == before
        assert api.delete(f"/api/sites/{site['id']}").status_code == 204
        assert helpers.comments(helpers.sites_text()) == before

    def test_every_kind_of_comment_survives(self, api: httpx.Client, unique_name: str) -> None:
        tag = unique_name
        crafted = CRAFTED.replace("TAG", tag)
        with helpers.preserved(helpers.SITES_FILE) as path:
            helpers.write_file(path, crafted)
            expected_comments = helpers.comments(crafted)
            assert len(expected_comments) == 8

            created = api.post("/api/sites", json={"name": "new", "url": f"https://{tag}.new/"})
            assert created.status_code == 201, created.text
            assert api.delete(f"/api/sites/{tag}-b").status_code == 204
            text = path.read_text()
            assert helpers.comments(text) == expected_comments
            ids = [s["id"] for s in helpers.read_sites()]
            assert ids == [f"{tag}-a", f"{tag}-c", created.json()["id"]]
            assert [s["id"] for s in api.get("/api/sites").json()] == ids
            # Strings that look like comments or brackets were never mistaken for them.
            assert api.get(f"/api/sites/{tag}-a").json()["name"] == "A // not a comment"

            # Remove the first and the last element too: the edges of the array.
            assert api.delete(f"/api/sites/{tag}-a").status_code == 204
            assert api.delete(f"/api/sites/{created.json()['id']}").status_code == 204
            text = path.read_text()
            assert helpers.comments(text) == expected_comments
            assert [s["id"] for s in helpers.read_sites()] == [f"{tag}-c"]
            assert api.get(f"/api/sites/{tag}-c").json()["name"] == "C /* not a comment */"


CRAFTED = """\
// crafted header TAG
/* crafted block TAG
   over two lines */
[
  // crafted before a
  {"id": "TAG-a", "name": "A // not a comment", "url": "https://TAG-a.example.test/]"}, // after a
  /* before b */ {"id": "TAG-b", "name": "B \\" [ , {", "url": "https://TAG-b.example.test/"},
  {"id": "TAG-c", "name": "C /* not a comment */", "url": "https://TAG-c.example.test/"} // c
  // crafted end of array
] // crafted trailer
"""


class TestCorruptSites:
    """A broken or missing sites.jsonc is a clear 500, never a crash, and is never overwritten."""

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            ('[\n  {"id": "x", "name": \n', "Expecting value"),
            ('{"not": "an array"}\n', "not an array"),
            ("[1, 2]\n", "must be an object"),
            ("[ /* never closed\n", "unterminated"),
            ("", "Expecting value"),
        ],
        ids=["truncated", "object", "not-objects", "open-comment", "empty"],
    )
    def test_corrupt_file_is_500(self, api: httpx.Client, content: str, reason: str) -> None:
        with helpers.preserved(helpers.SITES_FILE) as path:
            helpers.write_file(path, content)
            response = api.get("/api/sites")
            assert response.status_code == 500
            error = response.json()["error"]
            assert error.startswith("sites.jsonc is corrupt: ")
            assert reason in error
            # A write must not "repair" the file by replacing it.
            post = api.post("/api/sites", json={"name": "x", "url": "https://corrupt.test/"})
            assert post.status_code == 500
            assert path.read_text() == content
        assert api.get("/api/sites").status_code == 200

    def test_missing_file_is_500(self, api: httpx.Client) -> None:
        with helpers.preserved(helpers.SITES_FILE) as path:
            path.unlink()
            for response in (
                api.get("/api/sites"),
                api.get("/api/sites/seed0001"),
                api.delete("/api/sites/seed0001"),
                api.post("/api/sites", json={"name": "x", "url": "https://missing.test/"}),
            ):
                assert response.status_code == 500
                assert response.json() == {"error": "sites.jsonc is missing from DATA_DIR"}
            assert not path.exists()
        assert api.get("/api/sites").status_code == 200

    def test_server_still_serves_other_routes(self, api: httpx.Client) -> None:
        with helpers.preserved(helpers.SITES_FILE) as path:
            helpers.write_file(path, "[ oops")
            assert api.get("/api/sites").status_code == 500
            assert api.get("/health").json() == {"status": "ok"}
            assert api.get("/api/stats").status_code == 200
