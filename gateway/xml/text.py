"""An element's text, read whole.

``element.text`` is only the text before the first child node, so ``4829<!--x-->13``
reads as ``4829`` there; a comment, a processing instruction or a CDATA boundary cuts
it short. Business values are read with these instead: every text node joined, which
is what a signature over the element covers (c14n and the SMEV transform keep all the
text and drop comments).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import overload

from lxml import etree


def text_of(element: etree._Element) -> str:
    """All the text in ``element`` and its descendants, in document order."""
    # lxml-stubs allow bytes here; a parsed tree's text is always str (annotated, not
    # cast(): a Python call on every value read).
    texts: Iterator[str] = element.itertext()  # type: ignore[assignment]
    return "".join(texts)


@overload
def find_text(parent: etree._Element, path: str) -> str | None: ...
@overload
def find_text(parent: etree._Element, path: str, default: str) -> str: ...
def find_text(parent: etree._Element, path: str, default: str | None = None) -> str | None:
    """``parent.findtext(path, default)``, but the whole text of the element found."""
    found = parent.find(path)
    return default if found is None else text_of(found)
