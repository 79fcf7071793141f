"""JSON with comments: read it, and edit a top-level array without losing the comments.

Reading strips ``//`` and ``/* */`` comments (outside strings) and tolerates trailing commas,
then hands the rest to :func:`json.loads`. Editing works on the original text: a small scanner
finds the ``[start, end)`` span of each top-level array element, so an edit can splice exactly
that element in or out and leave every comment where a human put it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ArrayLayout",
    "JsoncError",
    "append_element",
    "loads",
    "remove_element",
    "scan_array",
    "strip_comments",
]

_WHITESPACE = " \t\r\n"


class JsoncError(ValueError):
    """The text is not valid JSON-with-comments (or not the shape an edit needs)."""


@dataclass(frozen=True)
class ArrayLayout:
    """Where the pieces of a top-level array sit in the source text."""

    open: int  # index of the "["
    close: int  # index of the matching "]"
    elements: tuple[tuple[int, int], ...]  # [start, end) of each element's own text
    commas: tuple[int, ...]  # index of every comma directly inside the array, in order


def strip_comments(text: str) -> str:
    """``text`` with comments blanked out and trailing commas dropped, ready for ``json.loads``.

    Comments become spaces (newlines kept) so json's line/column in error messages still point
    at the right place in the original file.
    """
    out = list(text)
    last_significant = -1  # index of the last non-blank char outside comments
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _skip_string(text, i)
            last_significant = i - 1
            continue
        if ch == "/" and i + 1 < n and text[i + 1] in "/*":
            end = _skip_comment(text, i)
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if ch in "]}" and last_significant >= 0 and out[last_significant] == ",":
            out[last_significant] = " "
        if ch not in _WHITESPACE:
            last_significant = i
        i += 1
    return "".join(out)


def loads(text: str) -> Any:
    """Parse JSON-with-comments; raises :class:`JsoncError` with a one-line reason."""
    try:
        return json.loads(strip_comments(text))
    except json.JSONDecodeError as exc:
        raise JsoncError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def scan_array(text: str) -> ArrayLayout:
    """Locate the top-level array and each of its elements in ``text``."""
    i, n = 0, len(text)
    depth = 0
    open_at = -1
    close_at = -1
    elements: list[tuple[int, int]] = []
    commas: list[int] = []
    element_start = -1
    last_end = -1  # end of the last significant token seen inside the array
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if ch == "/" and i + 1 < n and text[i + 1] in "/*":
            i = _skip_comment(text, i)
            continue
        if close_at >= 0:
            raise JsoncError(f"unexpected content after the top-level array at offset {i}")
        if open_at < 0:
            if ch != "[":
                raise JsoncError("the top-level value is not an array")
            open_at = i
            depth = 1
            i += 1
            continue
        if depth == 1 and ch in ",]":
            if element_start >= 0:
                elements.append((element_start, last_end))
                element_start = -1
            elif ch == ",":
                # A leading comma or two in a row; a lone trailing comma before "]" is fine.
                raise JsoncError(f"empty array element at offset {i}")
            if ch == ",":
                commas.append(i)
            else:
                close_at = i
                depth = 0
            i += 1
            continue
        if depth == 1 and element_start < 0:
            element_start = i
        if ch == '"':
            i = _skip_string(text, i)
            last_end = i
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 1:
                raise JsoncError(f"unbalanced {ch!r} at offset {i}")
        i += 1
        last_end = i
    if open_at < 0:
        raise JsoncError("the text is empty")
    if close_at < 0:
        raise JsoncError("the top-level array is not closed")
    return ArrayLayout(open_at, close_at, tuple(elements), tuple(commas))


def append_element(text: str, value: Any) -> str:
    """``text`` with ``value`` added as the last element of its top-level array.

    The new element goes on its own line just before the closing ``]``, indented like the
    element before it; comments after the old last element stay attached to it.
    """
    layout = scan_array(text)
    close = layout.close
    if layout.elements:
        indent = _line_indent(text, layout.elements[-1][0]) or "  "
        segment_start = layout.elements[-1][1]
        needs_comma = len(layout.commas) < len(layout.elements)
    else:
        indent = "  "
        segment_start = layout.open + 1
        needs_comma = False
    closing_indent = _line_indent(text, close)
    if closing_indent is None:
        closing_indent = ""
    # Blank space before "]" is rebuilt below; comments in it are kept verbatim.
    kept = text[segment_start:close].rstrip(_WHITESPACE)
    rendered = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)
    return "".join(
        [
            text[:segment_start],
            "," if needs_comma else "",
            kept,
            "\n",
            indent,
            rendered,
            "\n",
            closing_indent,
            text[close:],
        ]
    )


def remove_element(text: str, index: int) -> str:
    """``text`` without element ``index`` of its top-level array (and one separating comma).

    Only the element's own text, its comma and the line it leaves blank are removed: comments
    before, after or beside it stay where they were.
    """
    layout = scan_array(text)
    if not 0 <= index < len(layout.elements):
        raise IndexError(f"array has no element {index}")
    start, end = layout.elements[index]
    following = [c for c in layout.commas if c >= end]
    cuts: list[tuple[int, int]] = []
    if following:
        comma = following[0]
        if text[end:comma].strip(_WHITESPACE) == "":
            end = comma + 1
        else:
            # A comment sits between the element and its comma: keep the comment.
            cuts.append((comma, comma + 1))
    elif index > 0:
        # The last element has no comma of its own: drop the one that separated it.
        comma = max(c for c in layout.commas if c < start)
        if text[comma + 1 : start].strip(_WHITESPACE) == "":
            # Nothing worth keeping between them: take the comma and the gap in one cut.
            return text[:comma] + text[end:]
        cuts.append((comma, comma + 1))
    start, end = _widen_to_line(text, start, end)
    cuts.append((start, end))
    result = text
    for cut_start, cut_end in sorted(cuts, reverse=True):
        result = result[:cut_start] + result[cut_end:]
    close = layout.close - (len(text) - len(result))  # every cut lies before the "]"
    if len(layout.elements) == 1 and result[layout.open + 1 : close].strip(_WHITESPACE) == "":
        # The last one is gone and nothing, not even a comment, is left inside: tidy "[]".
        result = result[: layout.open + 1] + result[close:]
    return result


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal that starts at ``text[i] == '"'``."""
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == '"':
            return j + 1
        if ch == "\n":
            break
        j += 1
    raise JsoncError(f"unterminated string starting at offset {i}")


def _skip_comment(text: str, i: int) -> int:
    """Index just past the comment that starts at ``text[i:i+2]`` (``//`` or ``/*``)."""
    if text[i + 1] == "/":
        newline = text.find("\n", i)
        return len(text) if newline < 0 else newline
    close = text.find("*/", i + 2)
    if close < 0:
        raise JsoncError(f"unterminated /* comment starting at offset {i}")
    return close + 2


def _line_indent(text: str, i: int) -> str | None:
    """The blank prefix of ``text[i]``'s line, or None if something else comes first on it."""
    line_start = text.rfind("\n", 0, i) + 1
    prefix = text[line_start:i]
    return prefix if prefix.strip(_WHITESPACE) == "" else None


def _widen_to_line(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow ``[start, end)`` to whole lines when nothing else shares them, else eat spaces."""
    newline = text.find("\n", end)
    line_end = len(text) if newline < 0 else newline
    if _line_indent(text, start) is not None and text[end:line_end].strip(_WHITESPACE) == "":
        line_start = text.rfind("\n", 0, start) + 1
        return line_start, min(line_end + 1, len(text))
    while end < len(text) and text[end] in " \t":
        end += 1
    if text[end:line_end].strip(_WHITESPACE) == "":
        # Something stays before it on the line: don't leave trailing blanks behind.
        while start > 0 and text[start - 1] in " \t":
            start -= 1
    return start, end
