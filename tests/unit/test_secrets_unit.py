"""Secrets logic that needs no sops: flattening, detection, redaction, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testpool.errors import SecretsError
from testpool.secrets import Redactor, detect_format, fingerprint, flatten, load_secrets


def test_nested_keys_flatten_to_upper_case() -> None:
    document = {
        "openrouter": {"api_key": "k1"},
        "db": {"main-url": "u"},
        "ports": [1, 2],
        "sops": {},
    }
    assert flatten(document) == {
        "OPENROUTER_API_KEY": "k1",
        "DB_MAIN_URL": "u",
        "PORTS_0": "1",
        "PORTS_1": "2",
    }


def test_dotenv_keys_keep_their_case() -> None:
    assert flatten({"Mixed_Case": "v"}, keep_case=True) == {"Mixed_Case": "v"}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("s.yaml", "a: ENC[AES256_GCM,data:x]\nsops:\n    age: []\n", ("yaml", True)),
        ("s.yaml", "a: 1\n", ("yaml", False)),
        ("s.json", '{"a": "x", "sops": {"mac": "m"}}', ("json", True)),
        ("s.json", '{"a": "x"}', ("json", False)),
        (".env", "A=ENC[x]\nsops_version=3.9.0\nsops_mac=ENC[y]\n", ("dotenv", True)),
        (".env", "A=1\n", ("dotenv", False)),
    ],
)
def test_detect_sops_files(name: str, text: str, expected: tuple[str, bool]) -> None:
    assert detect_format(Path(name), text) == expected


def test_plain_dotenv_and_json_load(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("# comment\nA=1\nexport B='two words'\n")
    (tmp_path / "b.json").write_text('{"service": {"token": "t"}, "A": "override"}')
    assert load_secrets([tmp_path / "a.env", tmp_path / "b.json"]) == {
        "A": "override",
        "B": "two words",
        "SERVICE_TOKEN": "t",
    }


def test_sops_file_without_sops_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "s.yaml"
    secret.write_text("a: ENC[x]\nsops:\n    mac: y\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(SecretsError, match="sops-encrypted but sops is not installed"):
        load_secrets([secret])


def test_redactor_replaces_every_value_longest_first() -> None:
    redact = Redactor(["abcd1234", "abcd", "no"])
    assert redact("x abcd1234 y abcd z no") == "x [secret] y [secret] z no"
    assert Redactor([])("abcd") == "abcd"


def test_redactor_knows_each_line_of_a_multi_line_secret() -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\nZZZZmore+key/material==\n-----END KEY-----\n"
    redact = Redactor([key])
    # a log is redacted one line at a time
    for line in key.splitlines():
        assert "[secret]" in redact(f"server printed: {line}")
    assert redact(key).count("AAAAB3") == 0


def test_fingerprint_changes_with_content_and_salt_but_shows_no_value(tmp_path: Path) -> None:
    path = tmp_path / "s.env"
    path.write_text("TOKEN=hunter22\n")
    first = fingerprint([path], os.urandom(16), tmp_path)
    assert "hunter22" not in first
    salt = b"0" * 16
    assert fingerprint([path], salt, tmp_path) == fingerprint([path], salt, tmp_path)
    assert fingerprint([path], salt, tmp_path) != fingerprint([path], b"1" * 16, tmp_path)
    before = fingerprint([path], salt, tmp_path)
    path.write_text("TOKEN=hunter23\n")
    assert fingerprint([path], salt, tmp_path) != before


def test_fingerprint_survives_moving_the_checkout(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s.env").write_text("TOKEN=same\n")
    salt = b"s" * 16
    assert fingerprint([tmp_path / "a" / "s.env"], salt, tmp_path / "a") == fingerprint(
        [tmp_path / "b" / "s.env"], salt, tmp_path / "b"
    )


@pytest.mark.parametrize(
    "secret", ["Tr0ub4dor\\&3", "pässwörd-€-🙂", "q\"uo'te\tand\\slash", "a b&c=d/e?f%g"]
)
def test_redactor_knows_escaped_forms_of_each_secret(secret: str) -> None:
    import html
    import json
    import urllib.parse

    redact = Redactor([secret])
    forms = {
        "as is": secret,
        "repr": repr(secret),  # pytest's assertion rewriting shows 'Tr0ub4dor\\&3'
        "ascii": ascii(secret),
        "json": json.dumps(secret),
        "json, unicode kept": json.dumps(secret, ensure_ascii=False),
        "url": urllib.parse.quote(secret, safe=""),
        "url, / kept": urllib.parse.quote(secret),
        "form": urllib.parse.quote_plus(secret),
        "html": html.escape(secret),
    }
    for name, form in forms.items():
        shown = redact(f"AssertionError: assert {form} == 'x'")
        assert "[secret]" in shown, name
        leftover = shown.replace("[secret]", "")
        assert secret not in leftover and form.strip("'\"") not in leftover, name


def test_redactor_variants_never_hide_ordinary_text() -> None:
    redact = Redactor(["Tr0ub4dor\\&3"])
    assert redact("Tr0ub4dor and 3 and \\& alone") == "Tr0ub4dor and 3 and \\& alone"
