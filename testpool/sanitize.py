"""Text from tests and servers, made safe to show on a terminal and to store as XML.

Test ids, failure messages, test output and server logs are written by others: they may hold
terminal escape sequences (colours, clear screen, the alternate screen, a window title), NUL
and other control characters, or text that a renderer would take for markup. What testpool
*prints* goes through :func:`inline` (ids, messages, paths: one line, every control character
shown as an escape such as ``\\x1b``) or :func:`block` (output and log tails: escape sequences
removed, line breaks kept, other control characters shown as escapes). What it *stores* keeps
the text; only XML, which cannot carry most control characters, gets :func:`xml_safe`.

Called by the renderers, the console reporters, the CLI's error boundary, the pool (server log
tails in error messages) and the JUnit writer.
"""

from __future__ import annotations

import re

# ECMA-48 sequences: CSI (colours, cursor, clear screen, alternate screen), OSC (window
# title, hyperlinks; ended by BEL or ST), DCS/SOS/PM/APC strings, and the short ESC forms
# (character sets, keypad modes, reset). Their 8-bit forms (C1 controls) too.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b) [0-?]* [\x20-/]* [@-~]                     # CSI ... final byte
    | (?:\x1b\]|\x9d) [^\x07\x1b\x9c\n]* (?:\x07|\x1b\\|\x9c)?      # OSC ... BEL or ST
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]) [^\x1b\x9c\n]* (?:\x1b\\|\x9c)?  # DCS, SOS, PM, APC
    | \x1b [\x20-/]* [0-~]                                      # nF / Fp / Fe / Fs escapes
    """,
    re.VERBOSE,
)
# C0 and C1 controls, DEL, and the bidirectional overrides that make text read differently
# from what it is. Tab and line feed are handled by the callers.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_INLINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What XML 1.0 cannot carry at all (lone surrogates included: they cannot even be encoded).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inline(text: str) -> str:
    """One line for the terminal: every control character shown as an escape (``\\x1b``).

    For ids, messages and paths, where each character matters and nothing may act on the
    terminal. Two different ids stay different.
    """
    return _CONTROL_INLINE.sub(_escape, text)


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (colours and the like)."""
    return _ESCAPES.sub("", text) if ("\x1b" in text or _has_c1(text)) else text


def _has_c1(text: str) -> bool:
    return any("\x80" <= char <= "\x9f" for char in text)


def block(text: str) -> str:
    """Several lines for the terminal: escape sequences removed, line breaks kept (a lone
    carriage return, as progress bars print, counts as one), other controls escaped."""
    text = strip_escapes(text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(_escape, text)


def xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot carry shown as escapes (``\\x1b``)."""
    return _XML_ILLEGAL.sub(_escape, text)


def squeeze_blank_lines(text: str) -> str:
    """No blank lines at either end, and at most one in a row (a tmux pane is mostly blank)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)
