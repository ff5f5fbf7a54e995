"""XSDs in xsd/: they load offline, sample content validates, bad content is refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import zeep
from lxml import etree

from gateway.core.errors import InternalError, SchemaViolation
from gateway.xml import namespaces as ns
from gateway.xml.parse import parse_secure
from gateway.xml.schema import (
    Kind,
    bus_schema,
    type_catalog,
    validate_bus_element,
    validate_content,
    wsdl_path,
    xsd_dir,
)
from gateway.xml.soap import OPERATIONS

DATA = Path(__file__).resolve().parents[1] / "data"
CONTENT = DATA / "content"
VALID = sorted(CONTENT.glob("*.xml"))
INVALID = sorted((CONTENT / "invalid").glob("*.xml"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(path: Path) -> etree._Element:
    return parse_secure(path.read_bytes())


def test_xsd_dir_is_repo_xsd() -> None:
    assert (xsd_dir() / "smev3" / "1.1" / "smev-message-exchange-types-1.1.xsd").is_file()
    assert wsdl_path() == xsd_dir() / "smev3" / "1.1" / "smev-message-exchange-service-1.1.wsdl"
    assert xsd_dir("/tmp") == Path("/tmp").resolve()


@pytest.mark.parametrize("path", sorted(xsd_dir().rglob("*.xsd")), ids=lambda p: p.name)
def test_every_xsd_has_no_dtd_and_compiles(path: Path) -> None:
    text = path.read_bytes()
    assert b"<!DOCTYPE" not in text
    assert b"xmldsig-core-schema" not in text
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    etree.XMLSchema(etree.parse(str(path), parser))


def test_catalog_indexes_the_six_types() -> None:
    catalog = type_catalog()
    assert set(catalog.namespaces) == set(ns.MESSAGE_TYPES)
    assert len(catalog) == 6
    inn = catalog.get(ns.FNS_INN)
    assert (inn.request_root, inn.response_root) == ("InnRequest", "InnResponse")
    birth = catalog.get(ns.ZAGS_BIRTH_RECORD)
    assert birth.request_root == "BirthRecordRequest"


def test_every_type_has_a_request_and_response_sample() -> None:
    names = {p.name for p in VALID}
    for path in (xsd_dir() / "types").glob("*.xsd"):
        assert f"{path.stem}.request.xml" in names
        assert f"{path.stem}.response.xml" in names


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_sample_content_validates(path: Path) -> None:
    kind: Kind = "request" if path.name.endswith(".request.xml") else "response"
    element = load(path)
    mt = validate_content(element, expect=kind)
    assert mt.namespace == etree.QName(element).namespace
    assert mt.kind_of(element) == kind


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_content_is_refused(path: Path) -> None:
    element = load(path)
    with pytest.raises(SchemaViolation) as info:
        validate_content(element)
    err = info.value
    assert err.code == "schema_violation"
    assert err.detail["errors"], "the libxml2 errors are in detail"
    assert err.detail["schema"] == path.name.split(".")[0] + ".xsd"
    # The message names the element, the line and what libxml2 said.
    assert etree.QName(element).localname in err.message
    assert "line " in err.message
    assert err.detail["errors"][0]["message"] in err.message


def test_refused_values_are_not_quoted() -> None:
    """libxml2 quotes the value it refuses; that is message content (a passport number,
    a name), which reaches faults and logs: the message names the element and the rule
    only."""
    text = (CONTENT / "mvd-passport-validity.request.xml").read_text("utf-8")
    bad = text.replace("482913", "48291X").replace("1995-05-28", "Сидоров")
    with pytest.raises(SchemaViolation) as info:
        validate_content(etree.fromstring(bad.encode()))
    err = info.value
    shown = err.message + repr(err.detail["errors"])
    assert "48291X" not in shown
    assert "Сидоров" not in shown
    assert "Number" in err.message
    assert "pattern" in err.message
    assert "BirthDate" in shown
    assert "xs:date" in shown


def test_many_errors_are_summarised() -> None:
    element = load(CONTENT / "invalid" / "mvd-residence-registration.bad-region.xml")
    with pytest.raises(SchemaViolation) as info:
        validate_content(element)
    assert info.value.detail["error_count"] >= 1
    assert len(info.value.detail["errors"]) <= 5


def test_unknown_namespace_names_it_and_the_known_ones() -> None:
    element = etree.fromstring(b'<Query xmlns="urn://example/unknown/1.0"><A/></Query>')
    with pytest.raises(SchemaViolation) as info:
        validate_content(element)
    assert "urn://example/unknown/1.0" in info.value.message
    assert ns.FNS_INN in info.value.message
    assert info.value.detail["namespace"] == "urn://example/unknown/1.0"
    assert ns.ZAGS_BIRTH_RECORD in info.value.detail["known"]


def test_content_without_namespace_is_refused() -> None:
    with pytest.raises(SchemaViolation, match="no namespace"):
        validate_content(etree.fromstring(b"<InnRequest/>"))


def test_response_root_in_request_slot_is_refused() -> None:
    element = load(CONTENT / "fns-inn.response.xml")
    with pytest.raises(SchemaViolation, match="expected <InnRequest>"):
        validate_content(element, expect="request")


def test_unknown_root_in_known_namespace_is_refused() -> None:
    element = etree.fromstring(f'<InnQuery xmlns="{ns.FNS_INN}"/>'.encode())
    with pytest.raises(SchemaViolation, match="InnRequest> or <InnResponse"):
        validate_content(element)


def test_content_inside_a_larger_tree_validates_as_a_root() -> None:
    wrapper = etree.Element("wrapper")
    wrapper.append(load(CONTENT / "fns-inn.request.xml"))
    validate_content(wrapper[0], expect="request")


def test_bus_schema_accepts_an_smev_client_envelope_body() -> None:
    envelope = load(DATA / "soap" / "send-request.xml")
    body_child = envelope.find(f"{{{ns.SOAP_ENV}}}Body/*")
    assert body_child is not None
    validate_bus_element(body_child)


def test_bus_schema_refuses_bad_message_id() -> None:
    text = (DATA / "soap" / "send-request.xml").read_bytes()
    # basic:UUID is lowercase hex (the version 1 rule is the bus's, after the schema).
    bad = text.replace(b"5b4e2a10-ca6c-11f0", b"5B4E2A10-ca6c-11f0")
    body_child = parse_secure(bad).find(f"{{{ns.SOAP_ENV}}}Body/*")
    assert body_child is not None
    with pytest.raises(SchemaViolation, match="MessageID") as info:
        validate_bus_element(body_child)
    assert "SendRequestRequest" in info.value.message


def test_bus_schema_refuses_unknown_root() -> None:
    with pytest.raises(SchemaViolation, match="No matching global declaration"):
        validate_bus_element(etree.fromstring(f'<Foo xmlns="{ns.SMEV_TYPES}"/>'.encode()))


def test_bus_schema_requires_exactly_one_content_element() -> None:
    text = (DATA / "soap" / "send-request.xml").read_bytes()
    bad = text.replace(
        b"</PassportValidityRequest>", b"</PassportValidityRequest><x:Extra xmlns:x='urn:x'/>"
    )
    body_child = parse_secure(bad).find(f"{{{ns.SOAP_ENV}}}Body/*")
    assert body_child is not None
    with pytest.raises(SchemaViolation):
        validate_bus_element(body_child)


def test_schemas_are_compiled_once() -> None:
    assert bus_schema() is bus_schema()
    assert bus_schema(xsd_dir()) is bus_schema()
    assert type_catalog() is type_catalog()
    assert type_catalog().get(ns.FNS_INN) is type_catalog().get(ns.FNS_INN)


def test_network_imports_are_refused(tmp_path: Path) -> None:
    (tmp_path / "types").mkdir()
    (tmp_path / "smev3" / "1.1").mkdir(parents=True)
    (tmp_path / "smev3" / "1.1" / "smev-message-exchange-types-1.1.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">'
        '<xs:import namespace="http://www.w3.org/2000/09/xmldsig#" '
        'schemaLocation="http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd"/>'
        "</xs:schema>"
    )
    with pytest.raises(InternalError, match="cannot load schema"):
        bus_schema(tmp_path)


def test_broken_type_catalog_is_reported(tmp_path: Path) -> None:
    (tmp_path / "types").mkdir()
    (tmp_path / "types" / "odd.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:odd">'
        '<xs:element name="Only"/></xs:schema>'
    )
    with pytest.raises(InternalError, match="exactly one"):
        type_catalog(tmp_path)


def test_wsdl_loads_in_zeep_offline() -> None:
    client = zeep.Client(str(wsdl_path()))  # type: ignore[no-untyped-call]
    service = client.bind("SMEVMessageExchangeService", "SMEVMessageExchangeEndpoint")
    operations = set(service._operations)
    assert operations == set(OPERATIONS)
    for op in OPERATIONS:
        assert getattr(client.service, op) is not None
    binding = client.wsdl.bindings[f"{{{ns.SMEV_SERVICE}}}SMEVMessageExchangeSoap11Binding"]
    send_request = binding.get("SendRequest")  # type: ignore[no-untyped-call]
    assert send_request.soapaction == "urn:SendRequest"
    assert (
        client.wsdl.services["SMEVMessageExchangeService"]
        .ports["SMEVMessageExchangeEndpoint"]
        .binding_options["address"]
        == "http://localhost/ws"
    )


def test_wsdl_fault_details_are_the_named_faults() -> None:
    client = zeep.Client(str(wsdl_path()))  # type: ignore[no-untyped-call]
    element = client.get_element(f"{{{ns.SMEV_FAULTS}}}InvalidContent")  # type: ignore[no-untyped-call]
    detail = element(Code="schema_violation", Description="bad", ValidationError=[])
    assert detail.Code == "schema_violation"
