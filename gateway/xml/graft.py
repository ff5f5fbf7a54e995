"""Copies of parts of other documents, put into a new one exactly as they were.

lxml's ``append`` (and ``insert``, ``extend``) reconciles the namespaces of the subtree
it moves: every declaration whose URI an ancestor already binds is removed, and what
used it is renamed to the ancestor's prefix. A consumer's
``<ns1:SenderProvidedRequestData>`` put under the bus's ``smev:``-prefixed ``Request``
became ``<smev:SenderProvidedRequestData>``, and an element declaring ``xmlns="urn:a"``
below one declaring ``xmlns:a="urn:a"`` became ``a:``-prefixed. The SMEV transform does
not see prefixes; exclusive c14n does, so an exc-c14n signature over the copy no longer
verified. Here a copy goes in as text instead: :meth:`Grafts.slot` leaves a placeholder
where it belongs, and :meth:`Grafts.done` serializes the finished document, puts each
part's own serialization (which declares on its first element every namespace in
scope where it was) in place of its placeholder, and parses the result once.

A document the bus writes wholly from values it knows (the replies that hand out a
message) skips the tree of placeholders: its markup is text around the parts'
serializations (:func:`serialized`), parsed once by :func:`parse_joined`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lxml import etree

_TARGET = "smevbus-graft"
# Our own serialization of trees that were parsed or built before: nothing to refuse.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, collect_ids=False)


#: A deep copy of an element (its tail too) into a document of its own: lxml's
#: ``__copy__``, called as it is; ``copy.deepcopy()`` reaches the same through its memo
#: (ten Python calls and a KeyError each time).
copy_tree: Callable[[etree._Element], etree._Element] = etree._Element.__copy__  # type: ignore[attr-defined]


def serialized(part: etree._Element) -> bytes:
    """``part`` (without its tail) as UTF-8 text declaring, on its first element, every
    namespace in scope where it is: it reads the same wherever it is put."""
    return etree.tostring(part, encoding="UTF-8", with_tail=False)


def parse_joined(*pieces: bytes) -> etree._Element:
    """The document that is ``pieces`` joined: the bus's own markup and
    :func:`serialized` parts."""
    return etree.fromstring(b"".join(pieces), _PARSER)


class Grafts:
    """Placeholders in one document under construction, and what goes into each.

    The parents of the placeholders must not declare a default namespace (the bus's
    elements are all prefixed): a part in no namespace would fall into it."""

    def __init__(self) -> None:
        self._parts: list[tuple[bytes, etree._Element]] = []

    def slot(self, parent: etree._Element, part: etree._Element) -> None:
        """A copy of ``part`` (without its tail) becomes ``parent``'s last child."""
        marker = os.urandom(16).hex()
        parent.append(etree.ProcessingInstruction(_TARGET, marker))
        self._parts.append((f"<?{_TARGET} {marker}?>".encode(), part))

    def done(self, root: etree._Element) -> etree._Element:
        """``root`` with every placeholder replaced: a new tree (``root`` is left as it
        was if there are none, and is no part of the result otherwise)."""
        if not self._parts:
            return root
        data = etree.tostring(root, encoding="UTF-8")
        for marker, part in self._parts:
            at = data.index(marker)
            data = data[:at] + serialized(part) + data[at + len(marker) :]
        self._parts.clear()
        return parse_joined(data)
