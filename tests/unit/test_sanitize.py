"""Text from tests and servers is made safe to show on a terminal and to store as XML."""

from __future__ import annotations

import pytest

from testpool.sanitize import block, inline, squeeze_blank_lines, strip_escapes, xml_safe

NASTY = [
    "\x1b[2J\x1b[H",  # clear screen, cursor home
    "\x1b[?1049h",  # alternate screen
    "\x1b]0;pwned\x07",  # window title (BEL)
    "\x1b]8;;http://x\x1b\\",  # hyperlink (ST)
    "\x1bP1$r\x1b\\",  # DCS
    "\x1b(0",  # line-drawing character set
    "\x1bc",  # reset the terminal
    "\x9b31m",  # 8-bit CSI
    "\x00",
    "\x07",
    "\x08",
    "\u202e",  # right-to-left override
]


@pytest.mark.parametrize("sequence", NASTY)
def test_nothing_that_acts_on_a_terminal_survives(sequence: str) -> None:
    for text in (inline(f"a{sequence}b"), block(f"a{sequence}b")):
        assert text.startswith("a") and text.endswith("b")
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)
        assert "\u202e" not in text


def test_inline_shows_every_control_character_so_ids_stay_distinct() -> None:
    assert inline("t[\x1b[31m]") == "t[\\x1b[31m]"
    assert inline("a\nb\tc\rd\x00") == "a\\nb\\tc\\rd\\x00"
    assert inline("t[\x01]") != inline("t[\x02]")
    assert inline("日本語 🙂 [red] [/health]") == "日本語 🙂 [red] [/health]"


def test_block_drops_colours_and_keeps_lines() -> None:
    assert (
        block("\x1b[31mred\x1b[0m\nnext\r\nthird\rfourth\ttab") == "red\nnext\nthird\nfourth\ttab"
    )
    assert block("nul\x00here") == "nul\\x00here"


def test_strip_escapes_leaves_plain_text_alone() -> None:
    plain = "no escapes [here] \\x1b"
    assert strip_escapes(plain) is plain
    assert strip_escapes("\x1b]0;unterminated title\nnext line") == "\nnext line"


def test_xml_safe_escapes_what_xml_cannot_carry() -> None:
    assert xml_safe("a\x00b\x1bc\x0cd\ud800e\ufffe") == "a\\x00b\\x1bc\\x0cd\\ud800e\\ufffe"
    assert xml_safe("tab\tnewline\nreturn\r é 🙂") == "tab\tnewline\nreturn\r é 🙂"


def test_squeeze_blank_lines() -> None:
    pane = "\n\nstarting\n\n\n\nerror: boom\n" + "\n" * 40
    assert squeeze_blank_lines(pane) == "starting\n\nerror: boom"
    assert squeeze_blank_lines("\n \n\n") == ""
