"""Go test files, read just enough to tell a test's own code from the code its package shares.

``func TestXxx(t *testing.T)`` bodies belong to their test: editing one reruns the tests of its
file, not the whole package. Everything else in a package's ``_test.go`` files — imports,
helpers, types, variables, ``TestMain``, ``init``, and the signatures of the tests (adding or
renaming a test can break the package's build) — is shared. A test body that the package's
test code names anywhere else (a test calling another test) is shared too.

A file whose braces do not balance (mid-edit, or a lexer surprise) is shared whole: when in
doubt, more tests rerun, never fewer. Called by the go runner for the cache.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

# `TestMain(m *testing.M)` does not match: it takes *testing.M.
TEST_FUNC = re.compile(r"^func\s+(Test(?:[^a-z\W]\w*)?)\s*\(\s*\w+\s+\*testing\.T\s*\)", re.M)


def go_test_names(text: str) -> list[str]:
    return TEST_FUNC.findall(text)


def mentions(package_text: str) -> Counter[str]:
    """How often each ``Test…`` identifier occurs in a package's test code."""
    return Counter(re.findall(r"\bTest\w*", package_text))


def shared_text(text: str, named: Mapping[str, int]) -> str:
    """``text`` (one ``_test.go`` file) without the bodies of its tests, except the bodies of
    tests that the package's test code names more than once (``named``: :func:`mentions`)."""
    pieces = []
    position = 0
    for match in TEST_FUNC.finditer(text):
        if named.get(match[1], 0) > 1:
            continue  # called or referred to elsewhere: its body is shared code
        opening = _body_start(text, match.end())
        closing = _matching_brace(text, opening) if opening is not None else None
        if opening is None or closing is None:
            return text
        if opening < position:
            return text  # overlapping matches: the file is not what it seems
        pieces.append(text[position : opening + 1])
        position = closing
    pieces.append(text[position:])
    return "".join(pieces)


def _body_start(text: str, start: int) -> int | None:
    """Index of the ``{`` that opens the function body after its signature."""
    index = start
    while index < len(text):
        char = text[index]
        if char == "{":
            return index
        if not char.isspace():
            return None  # a result type, a comment: not a plain test signature
        index += 1
    return None


def _matching_brace(text: str, opening: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``opening``, skipping strings, runes, raw
    strings and comments."""
    depth = 0
    index = opening
    length = len(text)
    while index < length:
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        elif char == "/" and text.startswith("//", index):
            end = text.find("\n", index)
            index = length if end < 0 else end
        elif char == "/" and text.startswith("/*", index):
            end = text.find("*/", index + 2)
            if end < 0:
                return None
            index = end + 1
        elif char == "`":
            end = text.find("`", index + 1)
            if end < 0:
                return None
            index = end
        elif char in "\"'":
            index = _end_of_quoted(text, index, char)
            if index < 0:
                return None
        index += 1
    return None


def _end_of_quoted(text: str, start: int, quote: str) -> int:
    """Index of the quote closing the string or rune at ``start`` (-1 if it does not close on
    its line)."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index
        if char == "\n":
            return -1
        index += 1
    return -1
