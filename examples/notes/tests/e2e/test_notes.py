"""The notes API, end to end."""

from __future__ import annotations

import httpx


def test_health(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"ok": True}


def test_create_then_read(api: httpx.Client) -> None:
    created = api.post("/notes", json={"text": "buy milk"})
    assert created.status_code == 201
    note = created.json()
    assert api.get(f"/notes/{note['id']}").json() == {"id": note["id"], "text": "buy milk"}
    assert note in api.get("/notes").json()


def test_text_is_required(api: httpx.Client) -> None:
    response = api.post("/notes", json={"text": "  "})
    assert response.status_code == 400
    assert response.json() == {"error": "text is required"}


def test_delete(api: httpx.Client) -> None:
    note = api.post("/notes", json={"text": "temporary"}).json()
    assert api.delete(f"/notes/{note['id']}").status_code == 204
    assert api.get(f"/notes/{note['id']}").status_code == 404
    assert api.delete(f"/notes/{note['id']}").status_code == 404


def test_unknown_note(api: httpx.Client) -> None:
    assert api.get("/notes/999999").status_code == 404
