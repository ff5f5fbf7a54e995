import pytest

from gateway.core.errors import InvalidContent, MessageTooLarge
from gateway.xml.parse import parse_secure


def test_plain_document_parses() -> None:
    root = parse_secure(b'<?xml version="1.0" encoding="UTF-8"?><!-- hi --><a x="1"><b>t</b></a>')
    assert root.tag == "a"
    assert root.findtext("b") == "t"


def test_character_references_are_fine() -> None:
    assert parse_secure(b"<a>&amp;&#1046;</a>").text == "&Ж"


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<!-- c --><!doctype a SYSTEM "http://evil.example/x.dtd"><a/>',
        b'<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
    ],
)
def test_doctype_refused(doc: bytes) -> None:
    with pytest.raises(InvalidContent, match="DOCTYPE") as info:
        parse_secure(doc)
    assert info.value.detail["reason"] == "doctype"


def test_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(InvalidContent, match="not well-formed"):
        parse_secure(b"<a>&x;</a>")


def test_size_limit() -> None:
    with pytest.raises(MessageTooLarge) as info:
        parse_secure(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
    assert info.value.detail == {"size": 2007, "limit": 1000}


def test_depth_limit() -> None:
    doc = b"<a>" * 65 + b"</a>" * 65
    with pytest.raises(InvalidContent, match="deeper than 64"):
        parse_secure(doc)
    assert parse_secure(b"<a>" * 64 + b"</a>" * 64).tag == "a"


def test_text_is_refused() -> None:
    with pytest.raises(InvalidContent, match="bytes"):
        parse_secure("<a/>")  # type: ignore[arg-type]


@pytest.mark.parametrize("doc", [b"", b"   ", b"<a>", b"<a></b>", b"\xff\xfe<a/>", b"not xml"])
def test_garbage_is_invalid_content(doc: bytes) -> None:
    with pytest.raises(InvalidContent):
        parse_secure(doc)
