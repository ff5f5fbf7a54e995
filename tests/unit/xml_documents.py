"""Hypothesis strategies for the fuzz properties: abstract XML trees and their many spellings.

A :class:`Node` is an infoset (names as namespace URI + local name, attributes, text and
child elements); :func:`spellings` draws one serialization of it, choosing prefixes,
where namespaces are declared (with redundant and unused declarations), attribute order
and quotes, ``<a/>`` or ``<a></a>``, character references or literal characters, CDATA or
escaped text, and optionally whitespace-only text, comments and processing instructions
where they do not change the text the SMEV transform keeps. Every spelling of one node
is the same document to a namespace-aware reader.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from lxml import etree

XML_NS = "http://www.w3.org/XML/1998/namespace"

#: Bounded and reproducible: CI runs the same examples every time and no database is kept.
FUZZ_SETTINGS: dict[str, Any] = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def fuzz_settings(max_examples: int, *, shrink: bool = True) -> settings:
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(max_examples=max_examples, phases=phases, **FUZZ_SETTINGS)


# Characters XML 1.0 allows in content: no surrogates, no C0 controls but TAB LF CR,
# no U+FFFE/U+FFFF.
XML_CHARS = st.characters(
    exclude_categories=("Cs",),
    exclude_characters=[chr(c) for c in range(0x20) if c not in (0x9, 0xA, 0xD)]
    + ["\ufffe", "\uffff"],
)
#: Text: any XML character, markup characters, whitespace only, and Cyrillic.
TEXT = st.one_of(
    st.text(XML_CHARS, max_size=10),
    st.text(alphabet="a&<>\"']]\r\n\t ;#x", max_size=8),
    st.text(alphabet=" \t\r\n", min_size=1, max_size=3),
    st.text(alphabet="Иван ёЖ-0123", max_size=10),
)
NAMESPACES = (
    "urn:a",
    "urn:b",
    "http://example.org/c",
    "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1",
    "http://example.org/d?q=%D0%B6#f",
)
_NAME_START = "abzAZ_жЖ\u00c0\uf900\U00010000"
LOCAL_NAMES = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_NAME_START),
    st.text(alphabet=_NAME_START + "09-.\u00b7", max_size=4),
)


@dataclass(frozen=True)
class Node:
    uri: str  # "" for no namespace
    local: str
    #: (namespace URI or "", local name, value), unique by (URI, local name)
    attrs: tuple[tuple[str, str, str], ...]
    #: text (str) and elements; no two texts are adjacent
    children: tuple[Node | str, ...]

    def element(self) -> etree._Element:
        """The tree lxml builds for this infoset (namespace prefixes left to lxml)."""
        el = etree.Element(_clark(self.uri, self.local))
        for uri, local, value in self.attrs:
            el.set(_clark(uri, local), value)
        last: etree._Element | None = None
        for child in self.children:
            if isinstance(child, str):
                if last is None:
                    el.text = child
                else:
                    last.tail = child
            else:
                last = child.element()
                el.append(last)
        return el


def _clark(uri: str, local: str) -> str:
    return f"{{{uri}}}{local}" if uri else local


@st.composite
def nodes(
    draw: st.DrawFn,
    depth: int = 0,
    *,
    namespaces: tuple[str, ...] = NAMESPACES,
    max_depth: int = 3,
    xml_attrs: bool = True,
) -> Node:
    """An abstract element: names from ``namespaces`` (or none), attributes, mixed content."""
    uris = st.sampled_from(("", *namespaces))
    attr_uris = st.sampled_from(("", *namespaces, *((XML_NS,) if xml_attrs else ())))
    keys = draw(st.lists(st.tuples(attr_uris, LOCAL_NAMES), max_size=4, unique=True))
    attrs = tuple((uri, local, draw(TEXT)) for uri, local in keys)
    children: list[Node | str] = []
    if depth < max_depth:
        count = draw(st.integers(0, 3))
        for _ in range(count):
            if draw(st.booleans()):
                text = draw(TEXT)
                if text:
                    children.append(text)
            children.append(
                draw(
                    nodes(
                        depth + 1, namespaces=namespaces, max_depth=max_depth, xml_attrs=xml_attrs
                    )
                )
            )
    if draw(st.booleans()):
        text = draw(TEXT)
        if text:
            children.append(text)
    return Node(draw(uris), draw(LOCAL_NAMES), attrs, tuple(children))


# ------------------------------------------------------------------ spellings


@dataclass(frozen=True)
class Extras:
    """Which meaning-preserving noise a spelling may add (all of it is dropped by the
    SMEV transform; a parser keeps whitespace, and may keep comments and PIs)."""

    whitespace: bool = False
    comments: bool = False
    pis: bool = False
    #: comments inside text too (exc-c14n drops them and joins the text around them)
    comments_in_text: bool = False


@st.composite
def spellings(draw: st.DrawFn, node: Node, extras: Extras = Extras()) -> str:
    """One serialization of ``node`` as a string (no XML declaration)."""
    uris = sorted({uri for uri in _uris(node) if uri != XML_NS})
    pool = ["a", "b", "p", "ns1", "ns2", "x", "Ж", "q0"]
    chosen = draw(st.permutations(pool))[: len(uris)] if len(uris) <= len(pool) else []
    prefixes = dict(zip(uris, chosen, strict=False))
    writer = _Writer(draw(st.randoms(use_true_random=False)), prefixes, extras)
    if draw(st.booleans()):  # declare every namespace on the root
        writer.root_declares = list(uris)
    out: list[str] = []
    writer.element(node, out, scope={}, default="")
    return "".join(out)


def _uris(node: Node) -> set[str]:
    found = {node.uri} | {uri for uri, _, _ in node.attrs}
    for child in node.children:
        if isinstance(child, Node):
            found |= _uris(child)
    return found - {""}


class _Writer:
    def __init__(self, rnd: random.Random, prefixes: dict[str, str], extras: Extras) -> None:
        # The tree is drawn from hypothesis; the many small choices of its spelling come
        # from one seeded Random, which is much faster and still reproducible.
        self.rnd = rnd
        self.prefixes = prefixes
        self.extras = extras
        self.root_declares: list[str] = []

    def element(self, node: Node, out: list[str], scope: dict[str, str], default: str) -> None:
        rnd = self.rnd
        scope = dict(scope)  # prefix -> uri in scope
        decls: dict[str, str] = {}  # attribute name -> value of namespace declarations

        def declare(prefix: str, uri: str) -> None:
            scope[prefix] = uri
            decls[f"xmlns:{prefix}"] = uri

        for uri in self.root_declares:
            declare(self.prefixes[uri], uri)
        self.root_declares = []
        # element name: the default namespace or a prefix
        if node.uri and rnd.random() < 0.5:
            if default != node.uri or rnd.random() < 0.5:  # maybe a redundant xmlns
                decls["xmlns"] = node.uri
            default = node.uri
            name = node.local
        elif node.uri:
            prefix = self.prefixes[node.uri]
            if scope.get(prefix) != node.uri or rnd.random() < 0.5:
                declare(prefix, node.uri)
            name = f"{prefix}:{node.local}"
        else:
            if default:
                decls["xmlns"] = ""
                default = ""
            name = node.local
        attrs: list[tuple[str, str]] = []
        for uri, local, value in node.attrs:
            if uri == XML_NS:
                attrs.append((f"xml:{local}", value))
            elif uri:
                prefix = self.prefixes[uri]
                if scope.get(prefix) != uri:
                    declare(prefix, uri)
                attrs.append((f"{prefix}:{local}", value))
            else:
                attrs.append((local, value))
        if rnd.random() < 0.5:  # an unused declaration
            unused = rnd.choice(["urn:unused", *NAMESPACES])
            prefix = rnd.choice(["u", "unused", "z9"])
            if prefix not in scope:
                declare(prefix, unused)
        every = [*decls.items(), *attrs]
        order = list(range(len(every)))
        self.rnd.shuffle(order)
        out.append(f"<{name}")
        for i in order:
            key, value = every[i]
            quote = self.rnd.choice("\"'")
            out.append(f" {key}={quote}{self.attribute_value(value, quote)}{quote}")
        items = list(node.children)
        if not items and not self.extras.whitespace and rnd.random() < 0.5:
            out.append("/>")
            return
        out.append(">")
        previous_is_text = False
        for item in items:
            if isinstance(item, str):
                self.text(item, out)
            else:
                if not previous_is_text:
                    self.noise(out)
                self.element(item, out, scope, default)
            previous_is_text = isinstance(item, str)
        if not previous_is_text:
            self.noise(out)
        out.append(f"</{name}>")

    def noise(self, out: list[str]) -> None:
        """Whitespace, a comment or a PI where no text is (so no text node changes)."""
        rnd, extras = self.rnd, self.extras
        if extras.whitespace and rnd.random() < 0.5:
            out.append("".join(rnd.choices(" \t\n", k=rnd.randint(1, 3))))
        if extras.comments and rnd.random() < 0.25:
            out.append(f"<!--{rnd.choice(['', ' c ', 'ж', '<a>'])}-->")
        if extras.pis and rnd.random() < 0.25:
            out.append(f"<?pi{rnd.choice(['', ' data', ' <x>?'])}?>")
        if extras.whitespace and (extras.comments or extras.pis) and rnd.random() < 0.5:
            out.append(" ")

    def attribute_value(self, value: str, quote: str) -> str:
        parts = []
        for char in value:
            must = char in "<&\t\n\r" or char == quote
            if must or self.rnd.random() < 0.2:
                parts.append(self.reference(char))
            else:
                parts.append(char)
        return "".join(parts)

    def reference(self, char: str) -> str:
        named = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;"}
        choices = [f"&#{ord(char)};", f"&#x{ord(char):X};", f"&#x{ord(char):x};"]
        if char in named:
            choices.append(named[char])
        return self.rnd.choice(choices)

    def text(self, text: str, out: list[str]) -> None:
        """``text`` as escaped characters and CDATA sections (split at random points)."""
        rnd = self.rnd
        cuts = sorted(rnd.sample(range(1, len(text)), min(2, len(text) - 1)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        written = ""
        for i, chunk in enumerate(chunks):
            if i and self.extras.comments_in_text and rnd.random() < 0.5:
                written += "<!--t-->"
            if "\r" not in chunk and "]]>" not in chunk and rnd.random() < 0.3:
                written += f"<![CDATA[{chunk}]]>"
                continue
            for char in chunk:
                # "]]>" must not appear in content, and CR would be read as LF
                must = char in "<&\r" or (char == ">" and written.endswith("]]"))
                written += self.reference(char) if must or rnd.random() < 0.2 else char
        out.append(written)


def c14n(element: etree._Element) -> bytes:
    """Exclusive c14n without comments, as the XMLDSig transform URI means it."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
