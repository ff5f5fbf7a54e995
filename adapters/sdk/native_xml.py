"""What every agency's native XML needs: its wire form, and its schema compiled once.

Shared by the adapters and the mock agencies; nothing here knows the bus.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from lxml import etree

from gateway.xml.schema import CompiledSchema, xsd_dir

CONTENT_TYPE: Final = "application/xml; charset=utf-8"


def to_bytes(element: etree._Element) -> bytes:
    """UTF-8 XML document with declaration, as sent on the wire."""
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def schema_path(schema_file: Path, directory: str | Path | None = None) -> Path:
    """Path of ``schema_file`` under the repo's ``xsd/`` (or ``directory``)."""
    return xsd_dir(directory) / schema_file


@functools.cache
def compiled_schema(path: Path) -> CompiledSchema:
    """The XSD at ``path``, compiled once per process by a parser that never touches
    the network; ``.validate(el, what)`` raises SchemaViolation."""
    parser = etree.XMLParser(
        no_network=True, load_dtd=False, resolve_entities=False, huge_tree=False
    )
    return CompiledSchema(path, etree.XMLSchema(etree.parse(str(path), parser)))
