"""The one rule for strings bound for XML or the journal (gateway.core.xml_text)."""

from __future__ import annotations

import pytest

from gateway.core.xml_text import escape_forbidden, find_forbidden, forbidden_char


@pytest.mark.parametrize(
    ("text", "char"),
    [
        ("a\x00b", "U+0000"),
        ("\x08", "U+0008"),
        ("\x0b", "U+000B"),
        ("\x1f", "U+001F"),
        ("\ud800", "U+D800"),
        ("x\udfff", "U+DFFF"),
        ("\ufffe", "U+FFFE"),
        ("\uffff", "U+FFFF"),
    ],
)
def test_characters_xml_cannot_carry_are_found(text: str, char: str) -> None:
    assert forbidden_char(text) == char


def test_xml_characters_pass() -> None:
    assert forbidden_char("tab\tlf\ncr\r Смирнова \x7f\x85 \ufffd 😀 \U0010ffff") is None


def test_escape_makes_any_string_encodable() -> None:
    assert escape_forbidden("a\x00b\ud800") == "a\\u0000b\\ud800"
    escape_forbidden("\ud800").encode("utf-8")  # does not raise


def test_find_names_the_json_path_of_values_and_keys() -> None:
    data = {"mother": {"passport_number": "12\x0034", "ok": "x"}, "kids": ["a", {"n": "\ufffe"}]}
    assert find_forbidden(data) == ("mother.passport_number", "U+0000")
    assert find_forbidden({"kids": ["a", {"n": "\ufffe"}]}) == ("kids[1].n", "U+FFFE")
    assert find_forbidden({"a": {"k\x01": 1}}, "applicant") == ("applicant.a.k\\u0001", "U+0001")
    assert find_forbidden({"a": [1, 2.5, None, True, "fine"]}) is None
