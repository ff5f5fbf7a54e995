"""Hardened XML parsing: every document from outside the bus comes in through here.

Refused, each with a typed error (``invalid_content`` with a ``reason`` unless said):

* more than ``max_bytes`` (SMEV 3's 5 MB inline limit by default): ``message_too_large``;
* a DOCTYPE, in any encoding (``doctype``): so no DTD, no entity, no billion laughs.
  libxml2 itself finds it: a first pass over the prolog stops at the DOCTYPE, before a
  single declaration in it is read, or at the root element;
* more than :class:`XmlLimits` allows: elements (``elements``), attributes of one
  element or of the whole document (``attributes``), namespace declarations in the
  document or in scope at one element (``namespaces``), bytes between two start tags,
  i.e. one text, comment, or start tag with its attributes (``text``), nesting
  (``depth``; past 256 levels libxml2 stops first, ``syntax``);
* not well-formed (``syntax``), or in an encoding lxml cannot read (``encoding``).

The limits keep every later step (XSD, signature, serialization) linear in the size of
the document. libxml2 copies every namespace in scope at an element it validates or
serializes on its own, so 100 000 declarations on the Envelope once cost tens of
seconds of XSD validation; here they are counted before any of that runs. Counting is
one linear pass over the parser's events (never ``nsmap``, which collects every
namespace in scope on each call) and one XPath over the finished tree for the depth;
a small UTF-8 document whose bytes hold fewer ``<``, ``=`` and ``xmlns`` than the
limits allow cannot pass them, and is not counted (a bus message, nearly always).
A document larger than :data:`STREAM_ABOVE` is fed to libxml2 :data:`CHUNK` bytes at a
time and refused as soon as a limit is passed, neither read to its end nor held in
memory: one element with 500 000 attributes is refused after ``max_text_bytes`` of
it, before libxml2 parses any of them.

Comments and processing instructions are dropped while parsing and the text around
them joined, so whatever reads the tree reads exactly what a signature covers
(exclusive c14n drops comments, the SMEV transform drops both): ``4829<!--x-->13`` is
read as ``482913``, never as ``4829``. lxml never touches the network here and never
expands an entity.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from gateway.core.errors import InvalidContent, MessageTooLarge

MAX_BYTES = 5 * 1024 * 1024
#: Documents larger than this are fed to the parser :data:`CHUNK` bytes at a time and
#: checked as they come; smaller ones are parsed whole and checked after (cheaper).
STREAM_ABOVE = 64 * 1024
CHUNK = 8 * 1024


@dataclass(frozen=True)
class XmlLimits:
    """What one document may carry (the settings ``SMEVBUS_XML_MAX_*``)."""

    #: Element nesting.
    max_depth: int = 64
    #: Elements in the document.
    max_elements: int = 50_000
    #: Attributes of one element (namespace declarations not counted).
    max_attributes: int = 64
    #: Attributes in the whole document: the signature's digest writes each one (a
    #: few hundred ns in Python), and 64 on each of 50 000 elements would be 3.2 million.
    max_attributes_in_document: int = 50_000
    #: Namespace declarations (``xmlns``, ``xmlns:p``) in the whole document.
    max_namespaces: int = 1024
    #: Namespace declarations on one element and its ancestors together.
    max_namespaces_in_scope: int = 128
    #: Bytes the parser may read between two start tags: one text (comments in it
    #: included), or one start tag with its attributes. It reads :data:`CHUNK` bytes at
    #: a time: runs up to this pass, runs longer than it by two chunks do not.
    max_text_bytes: int = 1024 * 1024


LIMITS = XmlLimits()

_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}
# No "end" events: they cost more than all the others together (lxml makes a Python
# object for each), so depth is measured on the finished tree instead.
_EVENTS: tuple[Literal["start", "start-ns", "end-ns"], ...] = ("start", "start-ns", "end-ns")


def parse_secure(
    data: bytes, *, max_bytes: int = MAX_BYTES, limits: XmlLimits = LIMITS
) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise a typed error."""
    if not isinstance(data, bytes | bytearray):
        raise InvalidContent("XML must be given as bytes, not text", got=type(data).__name__)
    if len(data) > max_bytes:
        raise MessageTooLarge(
            f"document is {len(data)} bytes; the limit is {max_bytes} bytes. "
            "Send large files as attachments through the file store",
            size=len(data),
            limit=max_bytes,
        )
    if not data.strip():
        raise InvalidContent("document is empty")
    data = bytes(data)
    # Whole, a document cannot hold a run longer than itself.
    whole = len(data) <= min(STREAM_ABOVE, limits.max_text_bytes)
    # In UTF-8 (a plain prolog) every start tag takes a "<" byte: the elements, and how
    # deep they nest, are at most as many.
    plain = plain_prolog(data)
    tags = data.count(b"<") if plain else None
    if not plain:
        _refuse_doctype(data, whole, limits.max_text_bytes)
    census = _Census(limits)
    try:
        if whole:
            parser = _parsers.tree
            root = etree.fromstring(data, parser)
            _refuse_namespace_errors(parser.error_log)
            if tags is None or not _below_limits(data, tags, limits):
                census.take(etree.iterwalk(root, events=_EVENTS))
        else:
            root = _stream(data, census, limits.max_text_bytes)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    except ValueError as exc:  # e.g. an encoding declaration lxml cannot honour
        raise InvalidContent(f"document cannot be read: {exc}", reason="encoding") from None
    if tags is None or tags > limits.max_depth:
        _check_depth(root, limits.max_depth)
    return root


def parse_own(data: bytes) -> etree._Element:
    """Parse bytes the bus serialized itself from a tree :func:`parse_secure` accepted
    (a journaled message, back from its queue): with the same parser options (no
    entities, DTDs or network), without re-checking the limits that tree was held to,
    which cost three times the parse. Never for bytes from outside the bus."""
    try:
        return etree.fromstring(data, _parsers.tree)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None


def _stream(data: bytes, census: _Census, max_run: int) -> etree._Element:
    """Feed ``data`` to the parser a chunk at a time, counting as it goes."""
    parser = etree.XMLPullParser(_EVENTS, **_OPTIONS)
    quiet = 0  # bytes fed since the last chunk in which an element started
    for start in range(0, len(data), CHUNK):
        try:
            parser.feed(data[start : start + CHUNK])
        finally:
            # A limit passed before a syntax error is the more useful answer.
            events = list(parser.read_events())
            census.take(events)
        quiet = 0 if events else quiet + CHUNK
        if quiet > max_run:
            raise _long_run(max_run)
    root: etree._Element = parser.close()
    _refuse_namespace_errors(parser.error_log)
    return root


def _refuse_namespace_errors(log: etree._ListErrorLog) -> None:
    """libxml2 reports an undeclared prefix, or a namespace name that is no URI or not
    an absolute one, without failing the parse (lxml raises only when nothing follows
    it): names in such a tree are not what they say, and canonicalization fails on them
    later. Refuse them here."""
    for entry in log:
        if entry.domain == etree.ErrorDomains.NAMESPACE:
            raise InvalidContent(
                f"document has a namespace error at line {entry.line}: {entry.message}",
                reason="namespace",
                line=entry.line,
            )


def _syntax_error(exc: etree.XMLSyntaxError) -> InvalidContent:
    # libxml2's advice to its own callers is no use to the sender.
    message = exc.msg.replace(", use XML_PARSE_HUGE option", "")
    return InvalidContent(
        f"document is not well-formed XML: {message}", reason="syntax", line=exc.lineno
    )


def _long_run(limit: int) -> InvalidContent:
    return InvalidContent(
        f"document holds more than {limit} bytes between two start tags (one text, "
        f"comment, or start tag with its attributes); at most {limit} are allowed",
        reason="text",
        limit=limit,
    )


# --- the prolog: no DOCTYPE ------------------------------------------------------------


class _DoctypeFound(Exception):
    pass


class _RootFound(Exception):
    pass


class _Prolog:
    """Parser target of the first pass: libxml2 calls ``doctype`` on reading
    ``<!DOCTYPE name ...`` (before its internal subset) and ``start`` at the root
    element, after which no DOCTYPE can come; either ends the pass."""

    def doctype(self, name: str | None, public_id: str | None, system_url: str | None) -> None:
        raise _DoctypeFound

    def start(self, tag: str, attrib: object) -> None:
        raise _RootFound

    def close(self) -> None:
        return None


class _Parsers(threading.local):
    """Parsers are not shared between threads, and a target parser costs ~100 us to
    make, so each thread keeps its own."""

    def __init__(self) -> None:
        # lxml calls only the callbacks a target has; the stubs want them all.
        self.prolog = etree.XMLParser(target=_Prolog(), **_OPTIONS)  # type: ignore[arg-type]
        self.tree = etree.XMLParser(**_OPTIONS)


_parsers = _Parsers()


#: A prolog of at most a UTF-8 byte order mark, an XML declaration that leaves the
#: encoding UTF-8, and white space, then the root's start tag (in the first
#: :data:`_PLAIN_WITHIN` bytes). A DOCTYPE can only come before the root, so such a
#: document has none and the prolog parser's pass is skipped (~30 us on a SOAP call).
#: Anything else (comments, PIs, another encoding) takes the pass.
_PLAIN_PROLOG = re.compile(
    rb"(?:\xef\xbb\xbf)?"
    rb"(?:<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.[0-9]\"|'1\.[0-9]')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"(?i:utf-8)\"|'(?i:utf-8)'))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?"
    rb"[ \t\r\n]*\?>)?"
    rb"[ \t\r\n]*<[A-Za-z_]"
)
_PLAIN_WITHIN = 512


def plain_prolog(data: bytes) -> bool:
    """Whether ``data`` starts as :data:`_PLAIN_PROLOG` says: its root comes first."""
    return _PLAIN_PROLOG.match(data, 0, _PLAIN_WITHIN) is not None


def _refuse_doctype(data: bytes, whole: bool, max_run: int) -> None:
    """Run the prolog parser up to the root element: over ``data`` at once if
    ``whole``, else fed a chunk at a time (as the document will be). Not needed when
    the root comes first (:func:`plain_prolog`)."""
    parser = _parsers.prolog
    try:
        if whole:
            etree.fromstring(data, parser)
        else:
            _feed_prolog(parser, data, max_run)
    except _RootFound:
        return
    except _DoctypeFound:
        raise InvalidContent(
            "document has a DOCTYPE; DTDs and entity declarations are not allowed on the bus",
            reason="doctype",
        ) from None
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    except ValueError as exc:
        raise InvalidContent(f"document cannot be read: {exc}", reason="encoding") from None
    raise InvalidContent("document has no root element", reason="syntax")


def _feed_prolog(parser: etree.XMLParser, data: bytes, max_run: int) -> None:
    try:
        for start in range(0, len(data), CHUNK):
            if start > max_run:  # no root yet: a huge prolog or root start tag
                raise _long_run(max_run)
            parser.feed(data[start : start + CHUNK])
        parser.close()
    finally:
        # Stopped half way (at the root, say): ready the parser for the next document.
        with contextlib.suppress(etree.XMLSyntaxError, _RootFound, _DoctypeFound):
            parser.close()


# --- counting what the parser reports ----------------------------------------------------


def _below_limits(data: bytes, tags: int, limits: XmlLimits) -> bool:
    """Whether the bytes of a UTF-8 document (:func:`plain_prolog`: no DOCTYPE, so no
    defaulted attributes) with ``tags`` ``<`` in it show it within every limit
    :class:`_Census` counts, so the census cannot refuse it: each element's start tag
    takes a ``<``, each attribute and namespace declaration a ``=``, each declaration
    an ``xmlns``, as they are written (no reference can stand for markup). A bus
    message has a few dozen of each; the census's pass over the parser's events costs
    more than its parse. Anything over these bounds is counted by the census, as before."""
    return (
        tags <= limits.max_elements
        and data.count(b"=") <= min(limits.max_attributes, limits.max_attributes_in_document)
        and data.count(b"xmlns") <= min(limits.max_namespaces, limits.max_namespaces_in_scope)
    )


class _Census:
    """Running counts over the parser's events; refuses as soon as a limit is passed.

    Every check costs O(1) per event, and namespace declarations are counted from the
    ``start-ns``/``end-ns`` events (each element's own declarations), never from
    ``nsmap``, which builds all the namespaces in scope on every call.
    """

    __slots__ = ("attributes", "elements", "in_scope", "limits", "namespaces")

    def __init__(self, limits: XmlLimits) -> None:
        self.limits = limits
        self.elements = 0
        self.attributes = 0
        self.namespaces = 0
        self.in_scope = 0

    def take(self, events: Iterable[tuple[str, Any]]) -> None:
        limits = self.limits
        max_elements, max_attributes = limits.max_elements, limits.max_attributes
        max_in_document = limits.max_attributes_in_document
        max_in_scope = limits.max_namespaces_in_scope
        elements, in_scope, namespaces = self.elements, self.in_scope, self.namespaces
        attributes = self.attributes
        for event, item in events:
            if event == "start":
                elements += 1
                own = len(item.attrib)
                attributes += own
                if (
                    elements > max_elements
                    or in_scope > max_in_scope
                    or own > max_attributes
                    or attributes > max_in_document
                ):
                    raise self._refusal(item, elements, in_scope)
            elif event == "start-ns":
                namespaces += 1
                in_scope += 1
                if namespaces > limits.max_namespaces:
                    raise _refused(
                        f"document declares more than {limits.max_namespaces} namespaces "
                        f"(xmlns attributes); at most {limits.max_namespaces} are allowed: "
                        "declare each namespace once",
                        "namespaces",
                        limits.max_namespaces,
                    )
            else:  # end-ns: one per declaration of the element that ends
                in_scope -= 1
        self.elements, self.in_scope, self.namespaces = elements, in_scope, namespaces
        self.attributes = attributes

    def _refusal(self, element: etree._Element, elements: int, in_scope: int) -> InvalidContent:
        """Which limit the element at ``start`` passed, in words."""
        limits = self.limits
        name = f"<{etree.QName(element).localname}>"
        if elements > limits.max_elements:
            return _refused(
                f"document has more than {limits.max_elements} elements; at most "
                f"{limits.max_elements} are allowed: split it into several messages",
                "elements",
                limits.max_elements,
            )
        if in_scope > limits.max_namespaces_in_scope:
            return _refused(
                f"{in_scope} namespace declarations are in scope at {name} (on it and its "
                f"ancestors); at most {limits.max_namespaces_in_scope} are allowed: declare "
                "each namespace once",
                "namespaces",
                limits.max_namespaces_in_scope,
            )
        if len(element.attrib) > limits.max_attributes:
            return _refused(
                f"{name} has {len(element.attrib)} attributes; at most {limits.max_attributes} "
                "are allowed",
                "attributes",
                limits.max_attributes,
            )
        return _refused(
            f"document has more than {limits.max_attributes_in_document} attributes; at most "
            f"{limits.max_attributes_in_document} are allowed: split it into several messages",
            "attributes",
            limits.max_attributes_in_document,
        )


def _refused(message: str, reason: str, limit: int) -> InvalidContent:
    return InvalidContent(message, reason=reason, limit=limit)


@functools.cache
def _deeper_than(levels: int) -> etree.XPath:
    """The first element ``levels`` + 1 deep: one step per level, each visiting the
    children of the step before, so all of them visit every element at most once."""
    return etree.XPath("(/*" + "/*" * levels + ")[1]")


def _check_depth(root: etree._Element, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` (libxml2 itself stops at 256)."""
    found = _deeper_than(max_depth)(root)
    assert isinstance(found, list)
    if found:
        assert isinstance(found[0], etree._Element)
        raise _refused(
            f"document nests deeper than {max_depth} levels "
            f"(at <{etree.QName(found[0]).localname}>)",
            "depth",
            max_depth,
        )
