"""Serving the bus WSDL and its XSDs with addresses that point back at this server.

The files in ``xsd/smev3/1.1/`` name each other by relative ``schemaLocation`` and carry a
placeholder ``soap:address``; a client that fetched ``/ws?wsdl`` must find the
imports and the endpoint on the same server, so both are rewritten to absolute URLs.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from gateway.core.errors import NotFound
from gateway.xml.schema import WSDL_FILE, bus_schema_dir

_LOCATION = re.compile(rb'schemaLocation="([A-Za-z0-9._-]+\.xsd)"')
_ADDRESS = re.compile(rb'(<soap:address\s+location=")[^"]*(")')
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+\.xsd$")


@functools.cache
def _read(directory: Path, name: str) -> bytes:
    return (directory / name).read_bytes()


def wsdl(directory: Path, base_url: str) -> bytes:
    """The WSDL with its endpoint at ``{base_url}/ws`` and imports under ``/ws/xsd/``.

    ``directory`` is the xsd folder; the served files are its ``smev3/1.1``."""
    text = _ADDRESS.sub(
        rb"\g<1>" + f"{base_url}/ws".encode() + rb"\g<2>",
        _read(bus_schema_dir(directory), WSDL_FILE),
    )
    return _absolute_imports(text, base_url)


def xsd(directory: Path, name: str, base_url: str) -> bytes:
    """One bus schema by file name (only the ``*.xsd`` files beside the WSDL are served)."""
    served = bus_schema_dir(directory)
    if not _SAFE_NAME.match(name) or not (served / name).is_file():
        raise NotFound(f"no schema {name!r}; the WSDL at /ws?wsdl lists the schemas")
    return _absolute_imports(_read(served, name), base_url)


def _absolute_imports(text: bytes, base_url: str) -> bytes:
    return _LOCATION.sub(
        lambda m: b'schemaLocation="' + f"{base_url}/ws/xsd/".encode() + m.group(1) + b'"', text
    )
