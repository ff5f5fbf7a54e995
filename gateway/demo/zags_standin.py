"""A stand-in ZAGS: answers birth-record requests from a two-record register.

It plays a provider exactly as a real one would over SOAP pull: GetRequest (the bus
and the portal's signatures checked by the client), look the record up, SendResponse
signed with the ZAGS key, Ack. The real ZAGS adapter and mock agency replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.client.participant import ParticipantClient
from gateway.xml.namespaces import qname
from gateway.xml.readers import read_request_data

BIRTH = "urn://smevbus/types/zags/birth-record/1.0"

_REGISTER: dict[tuple[str, str, str], dict[str, str]] = {
    ("Смирнова", "Анна", "2019-03-14"): {
        "number": "120197100000101234005",
        "date": "2019-03-20",
        "office_code": "R7100033",
        "office": "Отдел ЗАГС по городу Туле комитета ЗАГС Тульской области",
        "middle": "Сергеевна",
        "gender": "FEMALE",
        "place": "Российская Федерация, Тульская область, город Тула",
        "mother": "Смирнова Елена Викторовна 1991-07-02",
        "father": "Смирнов Сергей Александрович 1989-11-23",
        "cert_series": "II-БО",
        "cert_number": "512347",
    },
}


@dataclass(frozen=True)
class Answered:
    request_id: str
    found: bool
    response_id: str


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, qname(BIRTH, name))
    child.text = text
    return child


def _person(parent: etree._Element, role: str, full: str) -> None:
    last, first, middle, birth = full.split()
    person = _el(parent, role)
    for name, value in (("LastName", last), ("FirstName", first), ("MiddleName", middle)):
        _el(person, name, value)
    _el(person, "BirthDate", birth)
    _el(person, "Citizenship", "643")


def lookup(request: etree._Element) -> etree._Element:
    """The BirthRecordResponse for a BirthRecordRequest."""
    child = request.find(qname(BIRTH, "Child"))
    key = tuple(
        (child.findtext(qname(BIRTH, f)) or "") if child is not None else ""
        for f in ("LastName", "FirstName", "BirthDate")
    )
    response = etree.Element(qname(BIRTH, "BirthRecordResponse"), nsmap={"z": BIRTH})
    found = _REGISTER.get((key[0], key[1], key[2]))
    if found is None:
        _el(response, "RecordNotFound", "no birth act record matches the request")
        return response
    record = _el(response, "BirthRecord")
    act = _el(record, "ActRecord")
    _el(act, "Number", found["number"])
    _el(act, "Date", found["date"])
    office = _el(record, "RegistryOffice")
    _el(office, "Code", found["office_code"])
    _el(office, "Name", found["office"])
    kid = _el(record, "Child")
    for name, value in (
        ("LastName", key[0]),
        ("FirstName", key[1]),
        ("MiddleName", found["middle"]),
        ("Gender", found["gender"]),
        ("BirthDate", key[2]),
        ("BirthPlace", found["place"]),
    ):
        _el(kid, name, value)
    _person(record, "Mother", found["mother"])
    _person(record, "Father", found["father"])
    certificate = _el(record, "Certificate")
    _el(certificate, "Series", found["cert_series"])
    _el(certificate, "Number", found["cert_number"])
    _el(certificate, "IssueDate", found["date"])
    return response


async def answer_one(zags: ParticipantClient) -> Answered | None:
    """Pull one request, answer it, ack it; None if the queue was empty."""
    delivery = await zags.get_request()
    if delivery is None:
        return None
    request = read_request_data(delivery.request_data).content
    response = lookup(request)
    meta = await zags.send_response(delivery.reply_to, content=response)
    await zags.ack(delivery.metadata.message_id)
    found = response.find(qname(BIRTH, "BirthRecord")) is not None
    return Answered(str(delivery.metadata.message_id), found, str(meta.message_id))
