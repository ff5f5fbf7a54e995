"""Bus responses -> aggregation events, checked against every shipped sample and service."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from gateway.aggregator.responses import (
    Answer,
    Interim,
    Rejection,
    answer_data,
    apply_event,
    to_event,
)
from gateway.core.aggregation import (
    Effect,
    PartStatus,
    ServiceRequestState,
    new_service_request,
    on_sent,
    pick,
)
from gateway.core.catalogue import Catalogue, Service, parse_catalogue
from gateway.core.errors import InvalidContent
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.xml.messages import AsyncStatus, ResponseData
from gateway.xml.messages import Rejection as BusRejection
from gateway.xml.namespaces import SMEV_BASIC, SMEV_TYPES, XSD, ZAGS_BIRTH_RECORD
from gateway.xml.readers import read_response_data
from gateway.xml.schema import type_catalog

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
CATALOGUE: Catalogue = parse_catalogue((ROOT / "config" / "services.toml").read_text("utf-8"))
SAMPLE_FILES = sorted(CONTENT.glob("*.response.xml"))
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
RID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _load(path: Path) -> etree._Element:
    return etree.parse(str(path)).getroot()


#: Message type (content root namespace) -> its sample response element.
SAMPLES: dict[str, etree._Element] = {
    etree.QName(el).namespace or "": el for el in map(_load, SAMPLE_FILES)
}


def _xml(text: str) -> etree._Element:
    return etree.fromstring(text.encode())


def _response(
    content: etree._Element | None = None,
    rejections: tuple[BusRejection, ...] = (),
    status: AsyncStatus | None = None,
) -> ResponseData:
    return ResponseData(
        message_id=uuid.UUID(int=7),
        to="reply-token",
        content=content,
        rejections=rejections,
        status=status,
        element=etree.Element("unused"),
    )


# --- answer_data ----------------------------------------------------------------------


def test_leaves_nesting_and_namespaces() -> None:
    el = _xml(
        '<r:Root xmlns:r="urn:x" xmlns:o="urn:other"><r:A>1</r:A>'
        "<r:B><o:C>two</o:C><r:D/></r:B></r:Root>"
    )
    assert answer_data(el) == {"A": "1", "B": {"C": "two", "D": ""}}


def test_repeated_siblings_become_lists_in_document_order() -> None:
    el = _xml("<R><X>1</X><Y>a</Y><X>2</X><X><Z>3</Z></X></R>")
    assert answer_data(el) == {"X": ["1", "2", {"Z": "3"}], "Y": "a"}
    # One occurrence is the value itself (no schema-driven typing).
    assert answer_data(_xml("<R><X>1</X></R>")) == {"X": "1"}


def test_attributes_text_and_ignored_nodes() -> None:
    el = _xml(
        '<R xmlns:n="urn:n" id="9"><L unit="kg">5</L><E n:k="q" k="p"/>'
        "<!-- note --><?pi x?><M>a<S>b</S>c</M><W>  spaced </W></R>"
    )
    assert answer_data(el) == {
        "@id": "9",
        "L": {"@unit": "kg", "#text": "5"},
        "E": {"@k": "p"},
        "M": {"#text": "ac", "S": "b"},
        "W": "  spaced ",
    }
    assert answer_data(_xml("<R/>")) == {}
    assert answer_data(_xml("<R>only</R>")) == {"#text": "only"}


def test_prefix_and_attribute_order_do_not_matter() -> None:
    a = _xml('<p:R xmlns:p="urn:x" b="2" a="1"><p:K>v</p:K></p:R>')
    b = _xml('<R xmlns="urn:x" a="1" b="2"><K>v</K></R>')
    assert answer_data(a) == answer_data(b)
    assert list(answer_data(a)) == ["@a", "@b", "K"]
    canonical = _xml(etree.tostring(a, method="c14n").decode())
    assert answer_data(canonical) == answer_data(a)


def _leaf_paths(el: etree._Element, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        path = f"{prefix}{etree.QName(child).localname}"
        if len(child):
            out.extend(_leaf_paths(child, path + "/"))
        else:
            out.append((path, child.text or ""))
    return out


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_leaf_is_reachable_by_its_path(path: Path) -> None:
    content = _load(path)
    type_catalog().validate(content, expect="response")
    data = answer_data(content)
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert answer_data(_load(path)) == data  # deterministic
    leaves = _leaf_paths(content)
    assert leaves
    for leaf, text in leaves:
        found = pick(data, leaf)
        values = found if isinstance(found, list) else [found]
        assert text in values, (leaf, found)


def test_registrations_are_a_list_of_objects() -> None:
    data = answer_data(SAMPLES["urn://smevbus/types/mvd/residence-registration/1.0"])
    assert [r["Kind"] for r in data["Registration"]] == ["RESIDENCE", "STAY"]
    assert pick(data, "Registration/Address/City") == ["Тула", "Москва"]
    assert pick(data, "Registration/RegisteredTill") == ["2025-06-30"]


# --- to_event -------------------------------------------------------------------------


def test_content_is_an_answer() -> None:
    content = SAMPLES["urn://smevbus/types/fns/inn/1.0"]
    event = to_event(_response(content))
    assert event == Answer(
        message_id=uuid.UUID(int=7),
        message_type="urn://smevbus/types/fns/inn/1.0",
        data={"Inn": "710712345628", "TaxAuthorityCode": "7107", "AssignmentDate": "2011-04-18"},
        not_found=False,
    )
    assert event.kind == "answer"


def _not_found(namespace: str, root: str, text: str) -> etree._Element:
    el = _xml(f'<{root} xmlns="{namespace}"><RecordNotFound>{text}</RecordNotFound></{root}>')
    type_catalog().validate(el, expect="response")
    return el


def test_record_not_found_is_a_flagged_answer() -> None:
    text = "Запись акта о рождении не найдена"
    event = to_event(_response(_not_found(ZAGS_BIRTH_RECORD, "BirthRecordResponse", text)))
    assert isinstance(event, Answer)
    assert event.not_found is True
    assert event.data == {"RecordNotFound": text}
    # A record that merely contains such a name elsewhere is not "not found".
    other = _xml("<R><RecordNotFound>x</RecordNotFound><Inn>1</Inn></R>")
    answer = to_event(_response(other))
    assert isinstance(answer, Answer)
    assert answer.not_found is False
    # Passport validity answers NOT_FOUND as a status value: ordinary data.
    passport = to_event(_response(SAMPLES["urn://smevbus/types/mvd/passport-validity/1.0"]))
    assert isinstance(passport, Answer)
    assert passport.not_found is False


def test_rejections_keep_the_first_and_every_code() -> None:
    event = to_event(
        _response(
            rejections=(
                BusRejection("NO_DATA", "Сведения не найдены"),
                BusRejection("ACCESS_DENIED", "Нет доступа"),
            )
        )
    )
    assert event == Rejection(
        message_id=uuid.UUID(int=7),
        code="NO_DATA",
        description="Сведения не найдены",
        codes=("NO_DATA", "ACCESS_DENIED"),
    )
    assert event.kind == "rejection"


def test_async_status_is_interim() -> None:
    event = to_event(_response(status=AsyncStatus("underProcessing", "queued at agency")))
    assert event == Interim(uuid.UUID(int=7), "underProcessing", "queued at agency")
    assert event.kind == "interim"


def test_empty_response_is_refused() -> None:
    with pytest.raises(InvalidContent):
        to_event(_response())


def _bus_xml(inner: str) -> etree._Element:
    return _xml(
        f'<t:SenderProvidedResponseData xmlns:t="{SMEV_TYPES}" xmlns:b="{SMEV_BASIC}">'
        f"<t:MessageID>{uuid.UUID(int=8)}</t:MessageID><t:To>token</t:To>{inner}"
        "</t:SenderProvidedResponseData>"
    )


def test_from_read_response_data() -> None:
    sample = etree.tostring(SAMPLES[ZAGS_BIRTH_RECORD]).decode()
    answer = to_event(
        read_response_data(_bus_xml(f"<b:MessagePrimaryContent>{sample}</b:MessagePrimaryContent>"))
    )
    assert isinstance(answer, Answer)
    assert answer.message_id == uuid.UUID(int=8)
    assert pick(answer.data, "BirthRecord/ActRecord/Number") == "120197100000101234005"
    rejected = to_event(
        read_response_data(
            _bus_xml(
                "<t:RequestRejected><t:RejectionReasonCode>FAILURE</t:RejectionReasonCode>"
                "<t:RejectionReasonDescription>down</t:RejectionReasonDescription>"
                "</t:RequestRejected>"
            )
        )
    )
    assert isinstance(rejected, Rejection)
    assert rejected.codes == ("FAILURE",)
    interim = to_event(
        read_response_data(
            _bus_xml(
                "<t:AsyncProcessingStatus><t:StatusCategory>underProcessing</t:StatusCategory>"
                "</t:AsyncProcessingStatus>"
            )
        )
    )
    assert interim == Interim(uuid.UUID(int=8), "underProcessing", None)


# --- apply_event and the shipped services ---------------------------------------------


def _sent(service: Service) -> ServiceRequestState:
    state = new_service_request(RID, service, T0)
    for i, part in enumerate(service.parts):
        state = on_sent(state, part.id, uuid.UUID(int=100 + i), T0)
    return state


def _sample_nodes(content: etree._Element, path: str) -> list[etree._Element]:
    """Elements at ``path`` below the root, found with XPath (independent of pick)."""
    steps = "/".join(f"*[local-name()='{s}']" for s in path.split("/"))
    nodes = content.xpath(steps)
    assert isinstance(nodes, list)
    return [n for n in nodes if isinstance(n, etree._Element)]


#: Result fields whose elements the sample responses do not carry (each optional in,
#: or the RecordNotFound alternative of, its response XSD).
ABSENT_IN_SAMPLES = {
    "child-birth-benefit": {"birth_not_found", "parent_registration_not_found"},
    "passport-check": {"invalidity_reason"},
    "marriage-registration-check": {"dissolution_date", "marriage_not_found"},
}


@pytest.mark.parametrize("service", CATALOGUE.services, ids=lambda s: s.code)
def test_each_service_combines_its_sample_answers(service: Service) -> None:
    state = _sent(service)
    for i, part in enumerate(service.parts):
        assert part.message_type in SAMPLES, f"no sample response for {part.message_type}"
        event = to_event(_response(SAMPLES[part.message_type]))
        outcome = apply_event(state, part.id, event, T0 + timedelta(seconds=i + 1))
        assert outcome.effect is Effect.APPLIED
        state = outcome.state
    assert state.status is ServiceState.COMPLETED
    assert state.completed_by is CompletedBy.ALL_ANSWERED
    assert state.result is not None
    absent: set[str] = set()
    for part in service.parts:
        content = SAMPLES[part.message_type]
        for name, path in part.result:
            nodes = _sample_nodes(content, path)
            value = state.result[name]
            if not nodes:
                assert value is None, (name, path)
                absent.add(name)
                continue
            assert value, (name, path)  # carried by the sample -> non-empty in the result
            if all(len(n) == 0 for n in nodes):  # leaves: the texts themselves
                texts = [n.text or "" for n in nodes]
                assert value == (texts[0] if len(texts) == 1 else texts), (name, path)
            else:
                assert value == pick(answer_data(content), path)
    # Only alternatives and optional elements the samples leave out may be missing.
    assert absent == ABSENT_IN_SAMPLES[service.code]


def test_child_birth_benefit_result() -> None:
    service = CATALOGUE.get("child-birth-benefit")
    state = _sent(service)
    for part in service.parts:
        state = apply_event(
            state, part.id, to_event(_response(SAMPLES[part.message_type])), T0
        ).state
    result = state.result
    assert result is not None
    assert result["birth_act_number"] == "120197100000101234005"
    assert result["birth_act_date"] == "2019-03-20"
    assert result["birth_place"] == "Российская Федерация, Тульская область, город Тула"
    assert result["parent_inn"] == "710712345628"
    assert result["birth_not_found"] is None
    assert result["parent_registration_not_found"] is None
    registrations = result["parent_registrations"]
    assert [r["Kind"] for r in registrations] == ["RESIDENCE", "STAY"]
    assert registrations[0]["Address"]["City"] == "Тула"


def test_marriage_and_passport_results() -> None:
    marriage = CATALOGUE.get("marriage-registration-check")
    state = _sent(marriage)
    for part in marriage.parts:
        state = apply_event(
            state, part.id, to_event(_response(SAMPLES[part.message_type])), T0
        ).state
    assert state.result == {
        "marriage_act_number": "415",
        "marriage_date": "2015-08-15",
        "dissolution_date": None,
        "marriage_not_found": None,
        "husband_passport_status": "VALID",
        "wife_passport_status": "VALID",
    }
    check = CATALOGUE.get("passport-check")
    state = _sent(check)
    event = to_event(_response(SAMPLES[check.parts[0].message_type]))
    state = apply_event(state, "passport-validity", event, T0).state
    assert state.result == {
        "passport_status": "VALID",
        "passport_status_date": "2025-11-20",
        "invalidity_reason": None,
    }


def test_record_not_found_answers_the_part() -> None:
    service = CATALOGUE.get("child-birth-benefit")
    state = _sent(service)
    text = "Запись акта о рождении не найдена"
    missing = to_event(_response(_not_found(ZAGS_BIRTH_RECORD, "BirthRecordResponse", text)))
    state = apply_event(state, "birth-record", missing, T0).state
    for part in service.parts[1:]:
        event = to_event(_response(SAMPLES[part.message_type]))
        state = apply_event(state, part.id, event, T0).state
    assert state.part("birth-record").status is PartStatus.ANSWERED
    assert state.status is ServiceState.COMPLETED
    assert state.result is not None
    assert state.result["birth_not_found"] == text
    assert state.result["birth_act_number"] is None
    assert state.result["parent_inn"] == "710712345628"


def test_apply_rejection_and_interim() -> None:
    service = CATALOGUE.get("child-birth-benefit")
    state = _sent(service)
    interim = to_event(_response(status=AsyncStatus("underProcessing")))
    outcome = apply_event(state, "birth-record", interim, T0)
    assert outcome.effect is Effect.NO_CHANGE
    assert outcome.state is state
    rejection = to_event(
        _response(rejections=(BusRejection("ACCESS_DENIED", "no"), BusRejection("FAILURE", "x")))
    )
    outcome = apply_event(state, "birth-record", rejection, T0)
    assert outcome.became_final
    assert outcome.state.status is ServiceState.FAILED
    assert outcome.state.failed_part == "birth-record"
    part = outcome.state.part("birth-record")
    assert part.rejection is not None
    assert part.rejection.code == "ACCESS_DENIED"
    late = apply_event(outcome.state, "parent-inn", interim, T0)
    assert late.effect is Effect.LATE
    assert late.state is outcome.state


# --- catalogue result paths against the response XSDs ----------------------------------


def _xsd_children(schema: etree._Element, decl: etree._Element) -> dict[str, etree._Element]:
    """Element declarations directly inside ``decl`` (through sequences and choices)."""
    x = f"{{{XSD}}}"
    type_name = decl.get("type")
    if type_name is not None:
        local = type_name.split(":")[-1]
        found = schema.find(f"{x}complexType[@name='{local}']")
        if found is None:
            return {}  # a simple type: no children
        body = found
    else:
        inline = decl.find(f"{x}complexType")
        if inline is None:
            return {}
        body = inline
    out: dict[str, etree._Element] = {}
    for el in body.iter(f"{x}element"):
        # Only this level: skip declarations nested in an inline child type.
        parent = el.getparent()
        while parent is not None and parent.tag in (f"{x}sequence", f"{x}choice"):
            parent = parent.getparent()
        if parent is body:
            out[str(el.get("name"))] = el
    return out


def _xsd_has_path(namespace: str, path: str) -> bool:
    mt = type_catalog().get(namespace)
    schema = etree.parse(str(mt.compiled.path)).getroot()
    decl = schema.find(f"{{{XSD}}}element[@name='{mt.response_root}']")
    assert decl is not None
    for step in path.split("/"):
        children = _xsd_children(schema, decl)
        if step not in children:
            return False
        decl = children[step]
    return True


@pytest.mark.parametrize(
    ("service", "part", "name", "path"),
    [
        (s.code, p.id, name, path)
        for s in CATALOGUE.services
        for p in s.parts
        for name, path in p.result
    ],
    ids=lambda v: str(v),
)
def test_result_paths_exist_in_the_response_xsd(
    service: str, part: str, name: str, path: str
) -> None:
    message_type = CATALOGUE.get(service).part(part).message_type
    assert _xsd_has_path(message_type, path), f"{service}/{part}: {name} = {path!r}"


def test_xsd_walker_refuses_wrong_paths() -> None:
    assert not _xsd_has_path(ZAGS_BIRTH_RECORD, "BirthRecord/ActRecord/Nomber")
    assert not _xsd_has_path(ZAGS_BIRTH_RECORD, "ActRecord/Number")
    assert _xsd_has_path(ZAGS_BIRTH_RECORD, "BirthRecord/Mother/Citizenship")
