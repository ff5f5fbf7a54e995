"""Hardened XML parsing: every document from outside the bus comes in through here.

Refused before or while parsing, each with a typed error:

* more than ``max_bytes`` (SMEV 3's 5 MB inline limit by default) -> ``message_too_large``;
* any DOCTYPE (so no DTD, no internal or external entities, no billion laughs) and
  any entity reference -> ``invalid_content``;
* nesting deeper than ``max_depth`` -> ``invalid_content``;
* not well-formed, or not UTF-8 compatible -> ``invalid_content``.

lxml never touches the network here (``no_network``), never loads a DTD, and never
expands entities, so a hostile document costs at most one linear pass.
"""

from __future__ import annotations

import re

from lxml import etree

from gateway.core.errors import InvalidContent, MessageTooLarge

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64

# A DOCTYPE may only appear in the prolog, before the root element, but comments and
# processing instructions may come first; look at everything before the first element.
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )


def parse_secure(
    data: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH
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
    root_start = _ROOT_START.search(data)
    prolog = data[: root_start.start()] if root_start else data
    if _DOCTYPE.search(prolog):
        raise InvalidContent(
            "document has a DOCTYPE; DTDs and entity declarations are not allowed on the bus",
            reason="doctype",
        )
    try:
        root = etree.fromstring(bytes(data), parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidContent(
            f"document is not well-formed XML: {exc.msg}",
            reason="syntax",
            line=exc.lineno,
        ) from None
    except ValueError as exc:  # e.g. an encoding declaration lxml cannot honour
        raise InvalidContent(f"document cannot be read: {exc}", reason="encoding") from None
    _check_tree(root, max_depth)
    return root


def _check_tree(root: etree._Element, max_depth: int) -> None:
    # Iterative walk: a recursive one would itself be a stack-depth hazard.
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise InvalidContent(
                f"document nests deeper than {max_depth} levels "
                f"(at <{etree.QName(element).localname}>)",
                reason="depth",
                limit=max_depth,
            )
        for child in element:
            if isinstance(child, etree._Entity):
                raise InvalidContent(
                    f"entity reference &{child.name}; is not allowed on the bus",
                    reason="entity",
                )
            if isinstance(child.tag, str):
                stack.append((child, depth + 1))
