"""The hardened parser: DOCTYPEs in any encoding, the document limits, comments and PIs.

Each limit is tried just at it (parsed) and just past it (refused with its reason), on
both ways a document is read: whole (small documents) and in chunks (larger than
``STREAM_ABOVE``; :func:`streamed` pads a document past it with a trailing comment).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from gateway.core.errors import InvalidContent, MessageTooLarge
from gateway.xml.parse import (
    CHUNK,
    LIMITS,
    STREAM_ABOVE,
    XmlLimits,
    parse_own,
    parse_secure,
    plain_prolog,
)


def whole(doc: bytes) -> bytes:
    assert len(doc) <= STREAM_ABOVE
    return doc


def streamed(doc: bytes) -> bytes:
    """``doc`` followed by a comment that makes it larger than ``STREAM_ABOVE``."""
    return doc + b"<!--" + b" " * STREAM_ABOVE + b"-->"


WAYS = pytest.mark.parametrize("way", [whole, streamed], ids=["whole", "streamed"])
Way = Callable[[bytes], bytes]


def refused(doc: bytes, reason: str, limits: XmlLimits = LIMITS) -> InvalidContent:
    with pytest.raises(InvalidContent) as info:
        parse_secure(doc, limits=limits)
    assert info.value.detail["reason"] == reason, info.value.message
    return info.value


def test_plain_document_parses() -> None:
    root = parse_secure(b'<?xml version="1.0" encoding="UTF-8"?><!-- hi --><a x="1"><b>t</b></a>')
    assert root.tag == "a"
    assert root.findtext("b") == "t"


def test_character_references_are_fine() -> None:
    assert parse_secure(b"<a>&amp;&#1046;</a>").text == "&Ж"


@WAYS
def test_comments_and_processing_instructions_are_dropped_and_the_text_joined(way: Way) -> None:
    root = parse_secure(way(b"<a><n>4829<!--x-->13</n><m>12<?pi x?>34<![CDATA[56]]></m></a>"))
    assert root.findtext("n") == "482913"
    assert root.findtext("m") == "123456"
    assert not root.xpath("//comment() | //processing-instruction()")


# --- DOCTYPE in any form and encoding ----------------------------------------------------

_LAUGHS = (
    '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + ']><r x="&j;">&j;</r>'
)
DOCTYPES = {
    "internal_entity_in_text": '<!DOCTYPE r [<!ENTITY e "EXPANDED">]><r>&e;</r>',
    "internal_entity_in_attribute": '<!DOCTYPE r [<!ENTITY e "EXPANDED">]><r a="&e;"/>',
    "after_comment_holding_a_tag": '<!-- <a --><!DOCTYPE r [<!ENTITY e "EXPANDED">]><r a="&e;"/>',
    "after_processing_instruction": '<?p <a?><!DOCTYPE r [<!ENTITY e "EXPANDED">]><r a="&e;"/>',
    "external_file": '<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>',
    "external_entity_file": '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>',
    "external_entity_http": '<!DOCTYPE r [<!ENTITY e SYSTEM "http://127.0.0.1:1/x">]><r>&e;</r>',
    "public": '<!DOCTYPE r PUBLIC "-//X//Y//EN" "http://127.0.0.1:1/x.dtd"><r/>',
    "parameter_entity": (
        '<!DOCTYPE r [<!ENTITY % p "<!ENTITY e \'EXPANDED\'>"> %p;]><r a="&e;">&e;</r>'
    ),
    "billion_laughs": _LAUGHS,
    "empty": "<!DOCTYPE r><r/>",
}
ENCODINGS = {
    "utf8": ("UTF-8", "utf-8", b""),
    "utf8_bom": ("UTF-8", "utf-8", b"\xef\xbb\xbf"),
    "utf16le_bom": ("UTF-16", "utf-16-le", b"\xff\xfe"),
    "utf16be_bom": ("UTF-16", "utf-16-be", b"\xfe\xff"),
    "utf16le": ("UTF-16LE", "utf-16-le", b""),
    "utf16be": ("UTF-16BE", "utf-16-be", b""),
    "utf32le_bom": ("UTF-32", "utf-32-le", b"\xff\xfe\x00\x00"),
    "utf32be_bom": ("UTF-32", "utf-32-be", b"\x00\x00\xfe\xff"),
}


def encoded(text: str, encoding: str) -> bytes:
    declared, codec, bom = ENCODINGS[encoding]
    return bom + f'<?xml version="1.0" encoding="{declared}"?>{text}'.encode(codec)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("doctype", DOCTYPES)
def test_doctype_refused_in_any_form_and_encoding(doctype: str, encoding: str) -> None:
    error = refused(encoded(DOCTYPES[doctype], encoding), "doctype")
    assert "DOCTYPE" in error.message
    assert "EXPANDED" not in error.message


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_same_documents_without_doctype_parse(encoding: str) -> None:
    """The encodings themselves are fine: it is the DOCTYPE that is refused."""
    root = parse_secure(encoded('<!-- <a --><r a="Ж">текст</r>', encoding))
    assert (root.get("a"), root.text) == ("Ж", "текст")


@pytest.mark.parametrize(
    ("encoding", "declared"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16BE"), ("cp1251", "windows-1251")],
)
def test_large_documents_in_other_encodings_are_read_and_checked(
    encoding: str, declared: str
) -> None:
    text = "Ж" * STREAM_ABOVE
    doc = f'<?xml version="1.0" encoding="{declared}"?><r a="Ж"><a>{text}</a></r>'
    assert parse_secure(doc.encode(encoding)).findtext("a") == text
    doctype = doc.replace("<r ", '<!-- <a --><!DOCTYPE r [<!ENTITY e "X">]><r b="&e;" ')
    refused(doctype.encode(encoding), "doctype")


def test_a_large_document_in_utf32_is_not_read() -> None:
    """libxml2 reads UTF-32 only whole, not in chunks: a large one is refused."""
    doc = '<?xml version="1.0" encoding="UTF-32"?><r>' + "x" * STREAM_ABOVE + "</r>"
    refused(doc.encode("utf-32"), "syntax")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("doctype", DOCTYPES)
def test_no_document_with_a_doctype_skips_the_prolog_pass(doctype: str, encoding: str) -> None:
    assert not plain_prolog(encoded(DOCTYPES[doctype], encoding))


@pytest.mark.parametrize(
    ("prolog", "plain"),
    [
        (b"", True),
        (b"\xef\xbb\xbf \r\n", True),
        (b'<?xml version="1.0"?>\n', True),
        (b"<?xml version='1.0' encoding='utf-8' standalone='yes' ?>", True),
        (b'<?xml version="1.0" encoding="UTF-8"?>', True),
        (b'<?xml version="1.0" encoding="windows-1251"?>', False),  # another encoding
        (b"<?xml version='1.1' encoding='ISO-8859-5'?>", False),
        (b"<!-- c -->", False),
        (b"<?pi x?>", False),
        (b" " * 600, False),  # the root not within the first bytes
    ],
)
def test_the_prolog_pass_is_skipped_only_when_the_root_comes_first(
    prolog: bytes, plain: bool
) -> None:
    document = prolog + b'<r a="1">x</r>'
    assert plain_prolog(document) is plain
    assert parse_secure(document).get("a") == "1"


def test_lowercase_doctype_is_not_xml() -> None:
    refused(b'<!doctype r SYSTEM "http://evil.example/x.dtd"><r/>', "syntax")


def test_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(InvalidContent, match="not well-formed"):
        parse_secure(b"<a>&x;</a>")


# --- the limits -----------------------------------------------------------------------


def test_size_limit() -> None:
    with pytest.raises(MessageTooLarge) as info:
        parse_secure(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
    assert info.value.detail == {"size": 2007, "limit": 1000}


def nested(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


@WAYS
def test_depth_limit(way: Way) -> None:
    assert parse_secure(way(nested(64))).tag == "a"
    assert "deeper than 64" in refused(way(nested(65)), "depth").message


@WAYS
def test_depth_past_what_libxml2_allows_is_refused_in_plain_words(way: Way) -> None:
    with pytest.raises(InvalidContent) as info:
        parse_secure(way(nested(300)))
    assert "XML_PARSE_HUGE" not in info.value.message


def siblings(count: int, each: bytes = b"<e/>") -> bytes:
    return b"<r>" + each * (count - 1) + b"</r>"


@WAYS
def test_element_limit(way: Way) -> None:
    limits = XmlLimits(max_elements=100)
    assert len(parse_secure(way(siblings(100)), limits=limits)) == 99
    assert "more than 100 elements" in refused(way(siblings(101)), "elements", limits).message


def with_attributes(count: int) -> bytes:
    return b"<r " + b" ".join(b'a%d="v"' % i for i in range(count)) + b"><c/></r>"


@WAYS
def test_attribute_limit(way: Way) -> None:
    assert len(parse_secure(way(with_attributes(64))).attrib) == 64
    assert "<r> has 65 attributes" in refused(way(with_attributes(65)), "attributes").message


@WAYS
def test_attribute_limit_over_the_document(way: Way) -> None:
    """Each element within its own limit, all of them together over the document's."""
    limits = XmlLimits(max_attributes_in_document=100)
    doc = siblings(26, b'<e a="1" b="2" c="3" d="4"/>')  # 25 x 4 = 100 attributes
    assert len(parse_secure(way(doc), limits=limits)) == 25
    error = refused(way(doc.replace(b"<r>", b'<r z="1">')), "attributes", limits)
    assert "more than 100 attributes" in error.message


def declaring(count: int, start: int = 0) -> bytes:
    return b"".join(b' xmlns:p%d="urn:n%d"' % (i, i) for i in range(start, start + count))


@WAYS
def test_namespace_declarations_in_the_document(way: Way) -> None:
    """Counted over the whole document, even where few are in scope at once."""
    limits = XmlLimits(max_namespaces=40, max_namespaces_in_scope=10)
    doc = b"<r>" + b"".join(b"<c%s/>" % declaring(10, 10 * i) for i in range(4)) + b"</r>"
    assert len(parse_secure(way(doc), limits=limits)) == 4
    doc = doc.replace(b"</r>", b"<d xmlns:q='urn:q'/></r>")
    assert "more than 40 namespaces" in refused(way(doc), "namespaces", limits).message


@WAYS
def test_namespace_declarations_in_scope(way: Way) -> None:
    """An element's own declarations and its ancestors' add up; a sibling's do not."""
    limits = XmlLimits(max_namespaces_in_scope=10)
    doc = b"<r%s><a%s><b/></a><c%s/></r>" % (declaring(4), declaring(6, 4), declaring(6, 10))
    assert parse_secure(way(doc), limits=limits).tag == "r"
    doc = doc.replace(b"<b/>", b"<b xmlns:x='urn:x'/>")
    error = refused(way(doc), "namespaces", limits)
    assert "11 namespace declarations are in scope at <b>" in error.message


def test_the_limits_are_counted_whenever_the_bytes_do_not_bound_them() -> None:
    """A small UTF-8 document is not counted when its ``<``, ``=`` and ``xmlns`` are
    within the limits (it cannot pass them); past those bounds, or in another
    encoding (where ``xmlns`` is not those bytes), the census counts as before. Its
    depth likewise, by its ``<``."""
    limits = XmlLimits(max_depth=3, max_attributes=2, max_namespaces=1, max_namespaces_in_scope=1)
    assert parse_secure(b"<a><b><c/></b></a>", limits=limits)[0][0].tag == "c"
    assert parse_secure(b"<a><b><c/></b><b/></a>", limits=limits)[1].tag == "b"
    refused(b"<a><b><c><d/></c></b></a>", "depth", limits)
    assert parse_secure(b'<r a="1" b="2"/>', limits=limits).get("b") == "2"
    # More "=" than attributes: counted, and within the limits.
    assert parse_secure(b'<r a="1" b="2">x=y</r>', limits=limits).text == "x=y"
    assert "has 3 attributes" in refused(b'<r a="1" b="2" c="3"/>', "attributes", limits).message
    two = '<?xml version="1.0" encoding="UTF-16"?><r xmlns:p="urn:p" xmlns:q="urn:q"/>'
    for doc in (two.encode("utf-16"), two.encode("utf-16-be")):
        assert doc.count(b"xmlns") == 0
        assert "more than 1 namespaces" in refused(doc, "namespaces", limits).message


@pytest.mark.parametrize("count", [2_000, 30_000])  # read whole, in chunks
def test_namespace_bomb_on_the_root_is_refused_by_the_parser(count: int) -> None:
    error = refused(b"<r%s/>" % declaring(count), "namespaces")
    assert f"more than {LIMITS.max_namespaces} namespaces" in error.message


RUN = 3 * CHUNK  # a max_text_bytes for the tests: larger than a chunk, small to build
RUNS = XmlLimits(
    max_text_bytes=RUN, max_attributes=10**6, max_namespaces=10**6, max_namespaces_in_scope=10**6
)
#: Runs of ``size`` bytes between two start tags, as the content of an element.
LONG_RUNS: dict[str, Callable[[int], bytes]] = {
    "text": lambda size: b"x" * size,
    "text_split_by_comments": lambda size: b"x<!---->" * (size // 8),
    "comment": lambda size: b"<!--" + b"x" * (size - 7) + b"-->",
    "attribute_value": lambda size: b'<e a="' + b"x" * (size - 9) + b'"/>',
    "attributes": lambda size: (
        b"<e" + b"".join(b' a%05d=""' % i for i in range(size // 10)) + b"/>"
    ),
    "namespace_declarations": lambda size: (b"<e" + declaring(size // 32)).ljust(size - 2) + b"/>",
}


def among_tags(run: bytes) -> bytes:
    """``run`` inside a document that has tags before and after it (so it is streamed)."""
    tags = b"<t/>" * (2 * CHUNK // 4)
    return b"<r>" + tags + run + tags + b"</r>"


@pytest.mark.parametrize("run", LONG_RUNS)
def test_bytes_without_a_tag_are_limited(run: str) -> None:
    """Text, comments, or a start tag with its attributes: what libxml2 reads between
    two tags. Refused after the limit, before such a start tag is parsed at all."""
    parse_secure(among_tags(LONG_RUNS[run](RUN - 64)), limits=RUNS)
    error = refused(among_tags(LONG_RUNS[run](RUN + 2 * CHUNK + 64)), "text", RUNS)
    assert f"more than {RUN} bytes between two start tags" in error.message


def test_a_long_prolog_is_limited() -> None:
    refused(b"<!--" + b"x" * (RUN + 2 * CHUNK) + b"--><r/>", "text", RUNS)


@pytest.mark.parametrize("size", [STREAM_ABOVE // 2, STREAM_ABOVE * 2])
def test_text_up_to_the_limit_is_read_whole(size: int) -> None:
    text = "Ж" * size
    root = parse_secure(f"<r><a>{text}</a>{text}</r>".encode())
    assert root.findtext("a") == text
    assert root[0].tail == text


def test_a_large_document_reads_as_it_would_whole() -> None:
    doc = '<r xmlns="urn:r"><a x="1">t<!--c-->u<b/>v</a><c>Ж</c></r>'.encode()
    assert etree.tostring(parse_secure(streamed(doc))) == etree.tostring(parse_secure(doc))


def test_text_is_refused() -> None:
    with pytest.raises(InvalidContent, match="bytes"):
        parse_secure("<a/>")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "doc", [b"", b"   ", b"<a>", b"<a></b>", b"\xff\xfe<a/>", b"not xml", b"<!-- only -->"]
)
def test_garbage_is_invalid_content(doc: bytes) -> None:
    with pytest.raises(InvalidContent):
        parse_secure(doc)


def test_garbage_after_a_large_prefix_is_invalid_content() -> None:
    with pytest.raises(InvalidContent, match="not well-formed"):
        parse_secure(b"<r>" + b" " * STREAM_ABOVE + b"</x>")


def test_the_bus_reads_back_what_it_serialized_as_it_was() -> None:
    checked = parse_secure(b'<a xmlns="urn:x" xmlns:p="urn:p"><p:b c="1">t&amp;u</p:b></a>')
    written = etree.tostring(checked)
    assert etree.tostring(parse_own(written)) == written
    with pytest.raises(InvalidContent):
        parse_own(written[:-3])
