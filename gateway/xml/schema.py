"""XSD validation of bus elements and of business content, with schemas compiled once.

Two kinds of schema live in ``xsd/``:

* the bus schema, SMEV 3 message exchange 1.1 (``smev3/1.1/``: the types XSD with
  ``basic``, and the faults XSD): every SOAP Body child and fault detail the bus reads
  or writes;
* the message types (``xsd/types/*.xsd``): one XSD per kind of record, whose target
  namespace *is* the message type, declaring a request root and a response root.

Schemas are compiled with a parser that never touches the network; ``schemaLocation``
imports are resolved from local files only. Compiled schemas are cached per process and
per directory. Validation failures raise :class:`~gateway.core.errors.SchemaViolation`
with the element, line and libxml2's words, and the first errors in ``detail["errors"]``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from lxml import etree

from gateway.core.errors import InternalError, SchemaViolation
from gateway.xml.namespaces import SMEV_FAULTS, SMEV_TYPES, XSD

BUS_SCHEMA_SUBDIR = "smev3/1.1"
"""Where, under the xsd folder, the served WSDL and its XSDs live."""
BUS_SCHEMA_FILE = "smev-message-exchange-types-1.1.xsd"
FAULTS_SCHEMA_FILE = "smev-message-exchange-faults-1.1.xsd"
WSDL_FILE = "smev-message-exchange-service-1.1.wsdl"
TYPES_SUBDIR = "types"
MAX_REPORTED_ERRORS = 5
"""How many libxml2 errors go into a SchemaViolation (message shows the first three)."""

Kind = Literal["request", "response"]


def xsd_dir(override: str | Path | None = None) -> Path:
    """The folder holding the bus WSDL/XSDs: ``override`` if given, else the repo's ``xsd/``."""
    if override is not None:
        return Path(override).resolve()
    return _DEFAULT_XSD_DIR


_DEFAULT_XSD_DIR = (Path(__file__).resolve().parents[2] / "xsd").resolve()


def bus_schema_dir(override: str | Path | None = None) -> Path:
    """The folder of the served WSDL and its XSDs (``<xsd_dir>/smev3/1.1``)."""
    return xsd_dir(override) / BUS_SCHEMA_SUBDIR


def wsdl_path(override: str | Path | None = None) -> Path:
    """Path of the message-exchange WSDL (what ``/ws?wsdl`` serves, address rewritten)."""
    return bus_schema_dir(override) / WSDL_FILE


class _LocalOnlyResolver(etree.Resolver):
    """Lets libxml2 load local files and refuses every other URL scheme."""

    # lxml-stubs omit the ``context`` argument that lxml passes.
    def resolve(  # type: ignore[override]
        self, system_url: str, public_id: str, context: object
    ) -> Any:
        scheme = urlsplit(system_url).scheme.lower()
        # A one-letter "scheme" is a Windows drive letter.
        if scheme not in ("", "file") and len(scheme) > 1:
            raise InternalError(f"schema import of {system_url!r} refused: no network access")
        return None


def _schema_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        no_network=True, load_dtd=False, resolve_entities=False, huge_tree=False
    )
    parser.resolvers.add(_LocalOnlyResolver())
    return parser


def _compile(path: Path) -> etree.XMLSchema:
    try:
        return etree.XMLSchema(etree.parse(str(path), _schema_parser()))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise InternalError(f"cannot load schema {path}: {exc}", path=str(path)) from exc


@dataclass(eq=False)
class CompiledSchema:
    """A compiled XSD and the lock that keeps its error log per call.

    lxml validates without the GIL but keeps one error log per schema object, so two
    threads validating at once would mix their errors; the lock prevents that.
    """

    path: Path
    schema: etree.XMLSchema
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def validate(self, element: etree._Element, what: str) -> None:
        """Validate ``element`` (as if it were a document root) or raise SchemaViolation."""
        with self._lock:
            if self.schema.validate(element):
                return
            # lxml-stubs do not type the error log; it is a list of _LogEntry.
            entries = list(cast("Iterable[Any]", self.schema.error_log))
        errors = [
            {"line": e.line, "column": e.column, "path": e.path, "message": _unquoted(e.message)}
            for e in entries[:MAX_REPORTED_ERRORS]
        ]
        total = len(entries)
        raise _violation(element, what, self.path.name, errors, total)


#: libxml2 quotes the refused value in these messages (``The value '123 45' is not
#: accepted by the pattern ...``, ``'x' is not a valid value of the atomic type ...``);
#: the value is message content (a passport number), so faults and logs name the
#: element and the rule without it.
_QUOTED_VALUES = (
    (re.compile(r"The value '.*' (?=(?:is not|has) )"), "The value "),
    (re.compile(r": '.*' (?=is not a valid value)"), ": the value "),
)


def _unquoted(message: str) -> str:
    for pattern, replacement in _QUOTED_VALUES:
        message = pattern.sub(replacement, message)
    return message


def _violation(
    element: etree._Element, what: str, schema_name: str, errors: list[dict[str, Any]], total: int
) -> SchemaViolation:
    name = etree.QName(element).localname
    where = f" at line {element.sourceline}" if element.sourceline else ""
    shown = "; ".join(
        (f"line {e['line']}: " if e["line"] else "") + str(e["message"]) for e in errors[:3]
    )
    more = f" (and {total - 3} more)" if total > 3 else ""
    return SchemaViolation(
        f"{what} <{name}>{where} does not match schema {schema_name}: {shown}{more}",
        element=etree.QName(element).text,
        schema=schema_name,
        errors=errors,
        error_count=total,
    )


@functools.cache
def _bus_schema(directory: Path) -> CompiledSchema:
    # One schema for both the operation elements and the fault details: a driver
    # document importing the types and the faults XSDs by file URI.
    imports = "".join(
        f'<xs:import namespace="{namespace}" schemaLocation="{(directory / name).as_uri()}"/>'
        for namespace, name in (
            (SMEV_TYPES, BUS_SCHEMA_FILE),
            (SMEV_FAULTS, FAULTS_SCHEMA_FILE),
        )
    )
    driver = etree.fromstring(
        f'<xs:schema xmlns:xs="{XSD}">{imports}</xs:schema>'.encode(), _schema_parser()
    )
    path = directory / BUS_SCHEMA_FILE
    try:
        return CompiledSchema(path, etree.XMLSchema(driver))
    except etree.XMLSchemaParseError as exc:
        raise InternalError(f"cannot load schema {path}: {exc}", path=str(path)) from exc


def bus_schema(directory: str | Path | None = None) -> CompiledSchema:
    """The compiled bus schema (1.1 types, basic and faults), compiled once per process.

    ``directory`` is the xsd folder (the schemas are in its ``smev3/1.1``)."""
    if directory is None:
        return _default_bus_schema()
    return _bus_schema(bus_schema_dir(directory))


@functools.cache
def _default_bus_schema() -> CompiledSchema:
    # Every SOAP request asks for it: no path to build and resolve each time.
    return _bus_schema(bus_schema_dir())


def validate_bus_element(element: etree._Element, *, directory: str | Path | None = None) -> None:
    """Validate a SOAP Body child (or fault detail) against the bus schema.

    Business content inside ``MessagePrimaryContent`` is not checked here (the bus schema
    skips it); use :func:`validate_content` for that.
    """
    bus_schema(directory).validate(element, "bus element")


@dataclass(frozen=True, eq=False)
class MessageType:
    """One business message type: its namespace, root element names and compiled XSD."""

    namespace: str
    request_root: str
    response_root: str
    compiled: CompiledSchema

    def kind_of(self, element: etree._Element) -> Kind | None:
        """``"request"`` or ``"response"`` by the root's local name, ``None`` if neither."""
        local = etree.QName(element).localname
        if local == self.request_root:
            return "request"
        if local == self.response_root:
            return "response"
        return None


def _read_type(path: Path) -> MessageType:
    # Compiled first, so a broken XSD fails with libxml2's message.
    compiled = CompiledSchema(path, _compile(path))
    root = etree.parse(str(path), _schema_parser()).getroot()
    namespace = root.get("targetNamespace")
    names = [str(el.get("name")) for el in root.iterchildren(f"{{{XSD}}}element")]
    requests = [n for n in names if n.endswith("Request")]
    responses = [n for n in names if n.endswith("Response")]
    if not namespace or len(requests) != 1 or len(responses) != 1:
        raise InternalError(
            f"message type schema {path.name} must have a targetNamespace and exactly one "
            f"global *Request and one *Response element; found {names}",
            path=str(path),
        )
    return MessageType(namespace, requests[0], responses[0], compiled)


class TypeCatalog:
    """Every ``xsd/types/*.xsd``, indexed by target namespace (= message type)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        types: dict[str, MessageType] = {}
        for path in sorted(directory.glob("*.xsd")):
            mt = _read_type(path)
            if mt.namespace in types:
                raise InternalError(
                    f"message type {mt.namespace} is declared twice: "
                    f"{types[mt.namespace].compiled.path.name} and {path.name}"
                )
            types[mt.namespace] = mt
        self._types = types

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self._types)

    def __contains__(self, namespace: object) -> bool:
        return namespace in self._types

    def __iter__(self) -> Iterator[MessageType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, namespace: str, root: str | None = None) -> MessageType:
        """The message type for ``namespace``, or SchemaViolation naming the known ones.

        ``root``: the local name of the content root, reported with an unknown type.
        """
        try:
            return self._types[namespace]
        except KeyError:
            known = ", ".join(self._types) or "(none)"
            raise SchemaViolation(
                f"unknown message type {namespace or '(no namespace)'!r}: "
                f"no XSD in xsd/types declares it. Known message types: {known}",
                reason="message_type",
                namespace=namespace,
                root=root,
                known=list(self._types),
            ) from None

    def validate(self, element: etree._Element, *, expect: Kind | None = None) -> MessageType:
        """Validate business content against its type's XSD; return the message type.

        ``expect`` additionally requires the request root (for SendRequest) or the
        response root (for SendResponse).
        """
        qname = etree.QName(element)
        mt = self.get(qname.namespace or "", qname.localname)
        kind = mt.kind_of(element)
        if kind is None or (expect is not None and kind != expect):
            wanted = {
                "request": [mt.request_root],
                "response": [mt.response_root],
                None: [mt.request_root, mt.response_root],
            }[expect]
            raise SchemaViolation(
                f"business content root <{qname.localname}> is not allowed here for message "
                f"type {mt.namespace}; expected <{'> or <'.join(wanted)}>",
                reason="content_kind",
                namespace=mt.namespace,
                element=qname.text,
                expected=wanted,
            )
        mt.compiled.validate(element, f"{kind} content")
        return mt


@functools.cache
def _type_catalog(directory: Path) -> TypeCatalog:
    return TypeCatalog(directory)


def type_catalog(directory: str | Path | None = None) -> TypeCatalog:
    """The catalogue of ``<xsd_dir>/types``, built once per process and directory."""
    return _type_catalog(xsd_dir(directory) / TYPES_SUBDIR)


def validate_content(
    element: etree._Element,
    *,
    expect: Kind | None = None,
    directory: str | Path | None = None,
) -> MessageType:
    """Validate the business element from ``MessagePrimaryContent``; return its type."""
    return type_catalog(directory).validate(element, expect=expect)
