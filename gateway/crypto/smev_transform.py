"""The SMEV 3 XML transform ``urn://smev-gov-ru/xmldsig/transform``.

Applied after exclusive c14n in every SMEV Reference, it normalizes an element so
that prefix choice, namespace declaration placement and attribute order no longer
change the digest:

1. the XML declaration, processing instructions and comments are dropped;
2. text nodes that are only whitespace (space, tab, CR, LF) are dropped, other
   text is kept as is (including inner line breaks); text on both sides of a comment
   is one text node, as in the exclusive c14n (without comments) the transform follows;
3. empty elements are written as a start tag and an end tag;
4. namespace declarations are written only where a name first needs them, so
   unused declarations disappear;
5. prefixes are ``ns1``, ``ns2``, ... from one counter for the whole document,
   never reset: a prefix is reused only while the element that declared it is
   open, so two siblings in one namespace get two prefixes;
6. an element's namespace declarations come before its attributes;
7. attributes are sorted by namespace URI then local name, unqualified ones last;
8. text and attribute values are written re-escaped: in text ``&`` ``<`` ``>``
   and CR; in attributes ``&`` ``<`` ``"`` and TAB, LF, CR as character references.

Rule 8's choice for ``>`` (always escaped in text, as exclusive c14n writes it) is
ours: the later recommendations (3.5.0.27) describe a context-dependent rule we
have not been able to verify. Elements without a namespace are written without a
prefix. The transform works on a parsed element directly; for parsed documents that
gives the same bytes as serializing with exclusive c14n and transforming the result.

Two implementations give the same bytes: :class:`_Writer` walks the lxml tree in
Python (the reference: every rule above is in its code), and the C scanner in
``_smev_fast.c`` transforms the element's exclusive c14n form (libxml2 writes it), two
to three times faster: a round trip transforms ten elements of up to 70, and in Python
that was about 5 % of the gateway's CPU. The C one runs when it was built (``pip
install`` compiles it where a C compiler is found); whatever it does not take (an
entity reference, a prefix nothing binds, a character reference in a namespace URI,
more than 128 prefixes in scope, a c14n form that is not XML) goes to the Python one,
which also gives the errors. Of a tree built in memory (not
parsed) the C one transforms what the tree serializes to, as SMEV 3 defines the
Reference (exclusive c14n first): lxml can build trees whose serialization binds a
prefix to another namespace than the tree holds, and what is signed must be what is
sent.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from gateway.core.errors import InvalidContent
from gateway.xml.parse import parse_secure

_fast_transform: Callable[[bytes], bytes | None] | None
try:
    from gateway.crypto._smev_fast import transform as _fast_transform
except ImportError:  # not compiled here: the Python implementation alone
    _fast_transform = None

ALGORITHM = "urn://smev-gov-ru/xmldsig/transform"

_WHITESPACE = " \t\r\n"
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xa;", "\r": "&#xd;"}
)


def _qname(name: str | bytes, what: str) -> etree.QName:
    # libxml2 reports an undeclared prefix as a non-fatal error and lxml lets some such
    # documents through, leaving a name like "p:x" without a namespace.
    try:
        return etree.QName(name)
    except ValueError:
        raise InvalidContent(
            f"{what} name {name!r} has a prefix that no namespace declaration binds",
            reason="namespace",
        ) from None


def smev_transform(source: etree._Element | bytes) -> bytes:
    """The transformed form of ``source`` (an element, or a serialized document), UTF-8."""
    element = parse_secure(source) if isinstance(source, bytes | bytearray) else source
    if _fast_transform is not None:
        try:
            canonical = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
        except (etree.C14NError, ValueError):
            pass  # the Python implementation says what is wrong
        else:
            transformed = _fast_transform(canonical)
            if transformed is not None:
                return transformed
    return python_smev_transform(element)


def python_smev_transform(element: etree._Element) -> bytes:
    """The transform by the Python implementation alone (the reference)."""
    return _Writer().run(element).encode("utf-8")


def _escape_text(text: str) -> str:
    # Four scans that find nothing cost less than one str.translate() with a mapping.
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xd;")
    return text


def _escape_attribute(value: str) -> str:
    # str.translate() with a mapping costs ~3 us even on a short value with nothing to do.
    if (
        "&" in value
        or "<" in value
        or '"' in value
        or "\t" in value
        or "\n" in value
        or "\r" in value
    ):
        return value.translate(_ATTR_ESCAPES)
    return value


def _split(name: str | bytes, what: str) -> tuple[str, str]:
    """``(namespace URI or "", local name)`` of a Clark-notation name."""
    qname = _qname(name, what)
    return qname.namespace or "", qname.localname


#: Clark-notation name -> (namespace URI or "", local name), shared by every transform:
#: a round trip transforms the same few dozen names ten times. Cleared past the limit.
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_LIMIT = 4096

#: An open element: the element, its end tag, the URIs it declared (out of scope at its end).
_Open = tuple[etree._Element, str, list[str] | None]


class _Writer:
    """One pass over the tree in document order (``iter()``, in libxml2), with the open
    elements on a stack; ~1 us per element. The common element (no attributes, its
    namespace already declared) is written from a per-tag cache; the others go through
    :meth:`_start_tag`. A recursive walk, or a QName per name, cost three times as much:
    the digest of a 5 MB document with 50 000 elements is computed by this loop."""

    def __init__(self) -> None:
        self.counter = 0
        #: uri -> prefix for declarations made by currently open elements
        self.scope: dict[str, str] = {}
        if len(_NAMES) > _NAMES_LIMIT:  # names come from outside: keep the cache bounded
            _NAMES.clear()

    def run(self, element: etree._Element) -> str:
        out: list[str] = []
        append = out.append
        scope, names = self.scope, _NAMES
        #: tag -> (the prefix it was cached with, start tag, end tag)
        plain: dict[str, tuple[str, str, str]] = {}
        stack: list[_Open] = []
        # Text not yet written: one text node of the transform (comments join two).
        pending = ""
        for node in element.iter():
            if stack:
                parent = node.getparent()
                while stack[-1][0] is not parent:
                    closed, end, out_of_scope = stack.pop()
                    if pending and pending.strip(_WHITESPACE):
                        append(_escape_text(pending))
                    append(end)
                    if out_of_scope:
                        for uri in out_of_scope:
                            del scope[uri]
                    pending = closed.tail or ""
            tag = node.tag
            if not isinstance(tag, str):
                # A comment is not there at all (exc-c14n without comments runs first and
                # joins the text around it); a PI stays between two text nodes (c14n keeps it).
                if isinstance(node, etree._Comment):
                    pending += node.tail or ""
                    continue
                if isinstance(node, etree._ProcessingInstruction):
                    if pending and pending.strip(_WHITESPACE):
                        append(_escape_text(pending))
                    pending = node.tail or ""
                    continue
                within = f" in {stack[-1][1][1:]}" if stack else ""
                raise InvalidContent(
                    f"entity reference {node.text}{within}; entities are not allowed"
                )
            if pending and pending.strip(_WHITESPACE):
                append(_escape_text(pending))
            name = names.get(tag)
            if name is None:
                name = names[tag] = _split(tag, "element")
            uri, local = name
            prefix = scope.get(uri) if uri else ""
            # lxml gives str names and values (the stubs allow bytes)
            items: list[tuple[str, str]] = node.items()  # type: ignore[assignment]
            declared: list[str] | None = None
            if prefix is None or items:
                start, end, declared = self._start_tag(node, uri, local, items)
            else:
                cached = plain.get(tag)
                if cached is None or cached[0] is not prefix:
                    qualified = f"{prefix}:{local}" if uri else local
                    cached = plain[tag] = (prefix, f"<{qualified}>", f"</{qualified}>")
                start, end = cached[1], cached[2]
            append(start)
            pending = node.text or ""
            if len(node):
                stack.append((node, end, declared))
                continue
            # A leaf is closed at once: no stack entry, no getparent() for it.
            if pending and pending.strip(_WHITESPACE):
                append(_escape_text(pending))
            append(end)
            if declared:
                for uri in declared:
                    del scope[uri]
            pending = (node.tail or "") if stack else ""
        while stack:
            closed, end, _declared = stack.pop()
            if pending and pending.strip(_WHITESPACE):
                append(_escape_text(pending))
            append(end)
            pending = (closed.tail or "") if stack else ""
        return "".join(out)

    def _declare(self, uri: str, declared: list[str]) -> str:
        self.counter += 1
        prefix = self.scope[uri] = f"ns{self.counter}"
        declared.append(uri)
        return prefix

    def _start_tag(
        self,
        node: etree._Element,
        uri: str,
        local: str,
        items: list[tuple[str, str]],
    ) -> tuple[str, str, list[str]]:
        """Start tag, end tag and the URIs newly declared, of an element that declares
        a namespace or has attributes."""
        declared: list[str] = []
        if uri:
            prefix = self.scope.get(uri) or self._declare(uri, declared)
            name = f"{prefix}:{local}"
        else:
            name = local
        attributes = self._attributes(node, items, declared) if items else ""
        if declared:
            scope = self.scope
            namespaces = "".join(
                [f' xmlns:{scope[ns]}="{_escape_attribute(ns)}"' for ns in declared]
            )
            return f"<{name}{namespaces}{attributes}>", f"</{name}>", declared
        return f"<{name}{attributes}>", f"</{name}>", declared

    def _attributes(
        self,
        node: etree._Element,
        items: list[tuple[str, str]],
        declared: list[str],
    ) -> str:
        """The attributes written in order, declaring into ``declared`` what they need."""
        if len(items) == 1:
            key, value = items[0]
            if "{" not in key and ":" not in key:
                return f' {key}="{_escape_attribute(value)}"'
        keys = "".join(node.keys())  # type: ignore[arg-type]
        if "{" not in keys and ":" not in keys:
            # All unqualified (the usual case): sorted by name, each written as is
            # unless a value holds a character to escape (the names cannot).
            rendered = "".join([f' {key}="{value}"' for key, value in sorted(items)])
            if (
                "&" not in rendered
                and "<" not in rendered
                and "\t" not in rendered
                and "\n" not in rendered
                and "\r" not in rendered
                and rendered.count('"') == 2 * len(items)
            ):
                return rendered
        names = _NAMES
        attrs: list[tuple[bool, str, str, str]] = []
        for key, value in items:
            split = names.get(key)
            if split is None:
                split = names[key] = _split(key, "attribute")
            # unqualified attributes sort after all qualified ones
            attrs.append((not split[0], split[0], split[1], value))
        if len(attrs) > 1:
            attrs.sort()
        rendered_each: list[str] = []
        for _unqualified, a_uri, a_local, value in attrs:
            if a_uri:
                a_prefix = self.scope.get(a_uri) or self._declare(a_uri, declared)
                a_local = f"{a_prefix}:{a_local}"
            rendered_each.append(f' {a_local}="{_escape_attribute(value)}"')
        return "".join(rendered_each)
