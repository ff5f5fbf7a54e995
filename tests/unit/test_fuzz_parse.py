"""Fuzz properties of the hardened parser, against its contract only: any bytes give an
element or a SmevbusError with a stable code (never another exception); well-formed
documents without a DOCTYPE parse to their infoset in every spelling and encoding.

Comments and processing instructions may be kept or dropped by the parser: the infoset
compared here has neither (and text on both sides of one is one text).
"""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.core.errors import SmevbusError
from gateway.xml.parse import parse_secure
from tests.unit.xml_documents import Extras, Node, c14n, fuzz_settings, nodes, spellings

PARSER_CODES = {"invalid_content", "message_too_large"}

Infoset = tuple[str, tuple[tuple[str, str], ...], tuple["Infoset | str", ...]]


def infoset(el: etree._Element) -> Infoset:
    """Name, attributes and content of ``el``, comments and PIs left out."""
    content: list[Infoset | str] = []

    def add_text(text: str | None) -> None:
        if not text:
            return
        if content and isinstance(content[-1], str):
            content[-1] += text
        else:
            content.append(text)

    add_text(el.text)
    for child in el:
        if isinstance(child.tag, str):
            content.append(infoset(child))
        add_text(child.tail)
    return str(el.tag), tuple(sorted(el.attrib.items())), tuple(content)  # type: ignore[arg-type]


def parse_or_refuse(data: bytes) -> etree._Element | None:
    """The contract: an element, or a SmevbusError with one of the parser's codes."""
    try:
        return parse_secure(data)
    except SmevbusError as exc:
        code = exc.code
    assert code in PARSER_CODES
    return None


# ---------------------------------------------------------------- any bytes


@fuzz_settings(300)
@given(st.binary(max_size=600))
def test_any_bytes_give_an_element_or_a_stable_error(data: bytes) -> None:
    parse_or_refuse(data)


@fuzz_settings(80)
@given(st.data())
def test_damaged_documents_give_an_element_or_a_stable_error(data: st.DataObject) -> None:
    doc = data.draw(documents())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, max(0, len(doc) - 1)))
        doc = doc[:at] + data.draw(st.binary(max_size=3)) + doc[at + 1 :]
    parse_or_refuse(doc)


# ---------------------------------------------------------------- generated documents

ENCODINGS = {
    # name: (codec, byte order mark)
    "UTF-8": ("utf-8", b""),
    "UTF-8 BOM": ("utf-8", codecs.BOM_UTF8),
    "UTF-16LE BOM": ("utf-16-le", codecs.BOM_UTF16_LE),
    "UTF-16BE BOM": ("utf-16-be", codecs.BOM_UTF16_BE),
    "UTF-16LE": ("utf-16-le", b""),
    "UTF-16BE": ("utf-16-be", b""),
}
PROLOG_NOISE = ["", "\n", "<!-- c -->", "<!-- <a -->", "<?pi x?>\n", "<!--x--><?p?> "]


@st.composite
def encoded(draw: st.DrawFn, text: str, *, prolog: str = "") -> bytes:
    """``text`` after an optional XML declaration and ``prolog``, in a drawn encoding.

    UTF-16 without a byte order mark always gets a declaration (how a reader knows it)."""
    name = draw(st.sampled_from(sorted(ENCODINGS)))
    codec, bom = ENCODINGS[name]
    label = "UTF-16" if codec.startswith("utf-16") else "UTF-8"
    declared = draw(st.booleans()) or (codec.startswith("utf-16") and not bom)
    decl = f'<?xml version="1.0" encoding="{label}"?>' if declared else ""
    return bom + (decl + prolog + text).encode(codec)


@st.composite
def documents(draw: st.DrawFn, node: Node | None = None) -> bytes:
    node = node if node is not None else draw(nodes())
    extras = Extras(whitespace=False, comments=True, pis=True)
    body = draw(spellings(node, extras))
    return draw(encoded(body, prolog=draw(st.sampled_from(PROLOG_NOISE))))


@fuzz_settings(80)
@given(st.data())
def test_well_formed_documents_parse_to_their_infoset(data: st.DataObject) -> None:
    node = data.draw(nodes())
    root = parse_secure(data.draw(documents(node)))
    assert infoset(root) == infoset(node.element())
    again = parse_secure(etree.tostring(root, encoding="UTF-8", xml_declaration=True))
    assert c14n(again) == c14n(root)


# ---------------------------------------------------------------- DOCTYPE

DOCTYPES = [
    '<!DOCTYPE r [<!ENTITY e "EXPANDED">]>',
    '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/hostname">]>',
    '<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">',
    '<!DOCTYPE r PUBLIC "-//X//Y//EN" "x.dtd">',
    '<!DOCTYPE r [<!ELEMENT r ANY><!ATTLIST r a CDATA "EXPANDED">]>',
    "<!DOCTYPE r>",
]


@fuzz_settings(100)
@given(st.data())
def test_any_doctype_is_refused(data: st.DataObject) -> None:
    doctype = data.draw(st.sampled_from(DOCTYPES))
    prolog = data.draw(st.sampled_from(PROLOG_NOISE)) + doctype
    doc = data.draw(encoded("<r>&e;</r>" if "ENTITY" in doctype else "<r/>", prolog=prolog))
    with pytest.raises(SmevbusError) as info:
        parse_secure(doc)
    assert info.value.code == "invalid_content"


@pytest.mark.parametrize(
    "doc",
    [
        b'<a><p:b/><c xmlns="rel"/></a>',  # undeclared element prefix
        b'<a q:x="1"><c xmlns="rel"/></a>',  # undeclared attribute prefix
        b'<a xmlns="x y"><b xmlns="z"/></a>',  # a namespace name that is not a URI
    ],
)
def test_namespace_errors_are_refused(doc: bytes) -> None:
    with pytest.raises(SmevbusError) as info:
        parse_secure(doc)
    assert info.value.code == "invalid_content"
