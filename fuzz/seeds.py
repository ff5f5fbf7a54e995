"""Write the seed corpus of the fuzz targets: the repository's XML samples plus one SOAP
envelope per message-exchange Body element and a Fault, as the bus and clients write them.

Usage: ``python fuzz/seeds.py DIR`` (``make fuzz`` does it). The signatures are empty
``ds:Signature`` placeholders: the readers look for their presence, not their validity.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.core.errors import InvalidContent
from gateway.core.smev_faults import Operation
from gateway.xml import messages as m
from gateway.xml.namespaces import DS, qname
from gateway.xml.smev_faults import smev_fault
from gateway.xml.soap import wrap_envelope

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests" / "data"
MESSAGE_ID = uuid.UUID("5b4e2a10-ca6c-11f0-8de9-0242ac120002")
WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def bodies() -> list[etree._Element]:
    content = etree.fromstring((SAMPLES / "content" / "fns-inn.request.xml").read_bytes())
    signature = etree.Element(qname(DS, "Signature"), nsmap={"ds": DS})
    meta = MessageMetadata(
        message_id=MESSAGE_ID,
        message_type="urn://smevbus/types/fns/inn/1.0",
        sender=ParticipantRef(mnemonic="PORTAL", name="Portal"),
        recipient=ParticipantRef(mnemonic="FNS"),
        sending_timestamp=WHEN,
        delivery_timestamp=WHEN,
        status="requestIsAcceptedBySmev",
    )
    selector = m.TypeSelector(WHEN, "urn://smevbus/types/fns/inn/1.0", "InnRequest", "node1")
    request_data = m.build_send_request(
        MESSAGE_ID, content, eol=WHEN, test=True, transaction_code="T-1", signature=signature
    )[0]
    response_data = m.build_send_response(MESSAGE_ID, "PORTAL", content=content)[0]
    return [
        m.build_send_request(MESSAGE_ID, content, eol=WHEN, signature=signature),
        m.build_send_request_response(meta, signature=signature),
        m.build_get_request(selector, signature=signature),
        m.build_get_request_response(
            m.RequestDelivery(request_data, meta, "PORTAL", signature), signature=signature
        ),
        m.build_send_response(MESSAGE_ID, "PORTAL", content=content, signature=signature),
        m.build_send_response(
            MESSAGE_ID, "PORTAL", rejections=[m.Rejection("NO_DATA", "nothing found")]
        ),
        m.build_send_response(
            MESSAGE_ID, str(MESSAGE_ID), status=m.AsyncStatus("underProcessing", "x")
        ),
        m.build_send_response(
            MESSAGE_ID, str(MESSAGE_ID), request_status=m.RequestStatus(1, "x", (("k", "v"),))
        ),
        m.build_send_response_response(meta, signature=signature),
        m.build_get_response(selector, signature=signature),
        m.build_get_response_response(
            m.ResponseDelivery(MESSAGE_ID, response_data, meta, signature), signature=signature
        ),
        m.build_ack(MESSAGE_ID, accepted=False, signature=signature),
        m.build_ack_response(),
        m.build_get_status(WHEN, signature=signature),
        m.build_get_status_response(
            m.StatusNotice(MESSAGE_ID, "requestIsRejectedBySmev", "x", "failed", "no queue"),
            signature=signature,
        ),
        m.build_get_incoming_queue_statistics(WHEN, node_id="node1", signature=signature),
        m.build_get_incoming_queue_statistics_response([m.QueueStatistic("requests.FNS", 2)]),
    ]


def seeds() -> list[bytes]:
    samples = [path.read_bytes() for path in sorted(SAMPLES.rglob("*.xml"))]
    envelopes = [wrap_envelope(body) for body in bodies()]
    fault = smev_fault(InvalidContent("not well-formed"), Operation.SEND_REQUEST)
    return [*samples, *envelopes, fault]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        (out / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324 (a file name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
