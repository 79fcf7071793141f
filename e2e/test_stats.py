"""Counters: the stats API, the stats.json file behind it, and a broken stats.json."""

from __future__ import annotations

from typing import Any

import helpers
import httpx
import pytest


def counter_name(unique_name: str) -> str:
    """A counter name (``[a-z0-9_]``) no other test uses."""
    return unique_name.replace("-", "_")


class TestStats:
    """Reading and incrementing counters."""

    def test_stats_is_an_object_of_integers(self, api: httpx.Client) -> None:
        response = api.get("/api/stats")
        assert response.status_code == 200
        stats = response.json()
        assert isinstance(stats, dict)
        assert all(isinstance(value, int) for value in stats.values())

    def test_increment_is_exactly_plus_one(self, api: httpx.Client) -> None:
        # A shared counter on purpose: if another worker used this DATA_DIR at the same
        # time, "exactly +1" (here and on disk) is what would break.
        before = api.get("/api/stats").json().get("page_views", 0)
        response = api.post("/api/stats/page_views/increment")
        assert response.status_code == 200
        assert response.json() == {"name": "page_views", "value": before + 1}
        assert api.get("/api/stats").json()["page_views"] == before + 1
        assert helpers.read_stats()["page_views"] == before + 1

    def test_increment_by(self, api: httpx.Client) -> None:
        before = helpers.counter("page_views")
        response = api.post("/api/stats/page_views/increment", json={"by": 5})
        assert response.json()["value"] == before + 5
        assert helpers.read_stats()["page_views"] == before + 5

    def test_new_counter_starts_at_zero(self, api: httpx.Client, unique_name: str) -> None:
        name = counter_name(unique_name)
        assert name not in api.get("/api/stats").json()
        first = api.post(f"/api/stats/{name}/increment")
        assert first.json() == {"name": name, "value": 1}
        second = api.post(f"/api/stats/{name}/increment", json={"by": 3})
        assert second.json() == {"name": name, "value": 4}
        assert helpers.read_stats()[name] == 4

    def test_increment_leaves_other_counters(self, api: httpx.Client, unique_name: str) -> None:
        before = helpers.read_stats()
        name = counter_name(unique_name)
        api.post(f"/api/stats/{name}/increment")
        assert helpers.read_stats() == {**before, name: 1}

    def test_stats_file_stays_valid_json(self, api: httpx.Client, unique_name: str) -> None:
        name = counter_name(unique_name)
        for _ in range(10):
            api.post(f"/api/stats/{name}/increment")
        assert helpers.read_stats()[name] == 10
        leftovers = [p.name for p in helpers.data_dir().iterdir() if p.name.endswith(".tmp")]
        assert leftovers == [], "atomic writes must not leave temp files behind"

    @pytest.mark.parametrize(
        "name",
        ["Upper", "has-dash", "dot.ted", "x" * 41, "spa%20ce"],
        ids=["upper", "dash", "dot", "too-long", "space"],
    )
    def test_bad_counter_name_is_400(self, api: httpx.Client, name: str) -> None:
        response = api.post(f"/api/stats/{name}/increment")
        assert response.status_code == 400
        assert response.json()["error"]

    def test_longest_counter_name_is_fine(self, api: httpx.Client) -> None:
        response = api.post(f"/api/stats/{'z' * 40}/increment")
        assert response.status_code == 200

    @pytest.mark.parametrize("by", ["two", 1.5, True, None, [1]])
    def test_bad_by_is_400(self, api: httpx.Client, unique_name: str, by: Any) -> None:
        name = counter_name(unique_name)
        response = api.post(f"/api/stats/{name}/increment", json={"by": by})
        assert response.status_code == 400
        assert name not in helpers.read_stats()

    def test_bad_json_is_400(self, api: httpx.Client, unique_name: str) -> None:
        name = counter_name(unique_name)
        response = api.post(
            f"/api/stats/{name}/increment",
            content=b"{by: 2}",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert name not in helpers.read_stats()


class TestCorruptStats:
    """A broken or missing stats.json is a clear 500, and restored for the next test."""

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            ('{"page_views": 4', "Expecting"),
            ("[1, 2, 3]", "not an object"),
            ('{"page_views": "many"}', "'page_views' is not an integer"),
            ('{"flag": true}', "'flag' is not an integer"),
        ],
        ids=["truncated", "array", "string-value", "bool-value"],
    )
    def test_corrupt_file_is_500(self, api: httpx.Client, content: str, reason: str) -> None:
        with helpers.preserved(helpers.STATS_FILE) as path:
            helpers.write_file(path, content)
            for response in (api.get("/api/stats"), api.post("/api/stats/x/increment")):
                assert response.status_code == 500
                error = response.json()["error"]
                assert error.startswith("stats.json is corrupt: ")
                assert reason in error
            assert path.read_text() == content
        assert api.get("/api/stats").status_code == 200

    def test_missing_file_is_500(self, api: httpx.Client) -> None:
        with helpers.preserved(helpers.STATS_FILE) as path:
            path.unlink()
            response = api.get("/api/stats")
            assert response.status_code == 500
            assert response.json() == {"error": "stats.json is missing from DATA_DIR"}
            assert api.post("/api/stats/x/increment").status_code == 500
            assert not path.exists()
        assert api.get("/api/stats").status_code == 200

    def test_site_creation_survives_broken_stats(
        self, api: httpx.Client, make_site: helpers.SiteFactory
    ) -> None:
        # Counting is a side effect: a broken stats.json must not fail (or undo) the create.
        with helpers.preserved(helpers.STATS_FILE) as path:
            helpers.write_file(path, "{ broken")
            site = make_site()
            assert site in helpers.read_sites()
            assert path.read_text() == "{ broken"
