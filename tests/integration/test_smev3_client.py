"""An existing SMEV 3 client pointed at ``/ws``: zeep from the served WSDL, no smevbus code.

The client side of this test is what an integrator already has: zeep built from
``/ws?wsdl``, a signing hook written with python-xmlsec (exclusive c14n, the key and
certificate from PEM files), and the served schemas fetched over HTTP. It runs all
seven 1.1 operations and a few refusals, and checks that every Body the gateway sends
back, faults included, validates against the schemas the gateway serves. (The dev PKI
and the gateway process are set up with smevbus, as a participant gets its keys from
its CA; nothing of smevbus runs on the client's side of the wire.)
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zeep
import zeep.exceptions
from lxml import etree

from gateway.core.clock import SystemClock
from gateway.crypto.devpki import cert_path, init_dev_pki, key_path
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from tests.integration import store_fixtures

xmlsec = pytest.importorskip("xmlsec")

postgres_url = store_fixtures.postgres_url

pytestmark = pytest.mark.integration

CONTENT = Path(__file__).resolve().parents[2] / "tests" / "data" / "content"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
DS = "http://www.w3.org/2000/09/xmldsig#"
TYPES = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1"
FAULTS = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.1"
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
OPERATIONS = (
    "SendRequest",
    "GetRequest",
    "SendResponse",
    "GetResponse",
    "Ack",
    "GetStatus",
    "GetIncomingQueueStatistics",
)


# --- the client's own tools -----------------------------------------------------------


def uuid1() -> str:
    return str(uuid.uuid1())


class XmlsecSigner(zeep.Plugin):  # type: ignore[misc]
    """Signs the operation's element that carries an Id, into its
    CallerInformationSystemSignature; keeps every reply Body for checking."""

    def __init__(self, key_file: Path, cert_file: Path) -> None:
        self.key = xmlsec.Key.from_file(str(key_file), xmlsec.constants.KeyDataFormatPem)
        self.key.load_cert_from_file(str(cert_file), xmlsec.constants.KeyDataFormatPem)
        self.method = (
            xmlsec.constants.TransformRsaSha256
            if _is_rsa(key_file)
            else xmlsec.constants.TransformEcdsaSha256
        )
        self.replies: list[etree._Element] = []

    def egress(
        self, envelope: etree._Element, http_headers: dict[str, str], operation: Any, options: Any
    ) -> tuple[etree._Element, dict[str, str]]:
        operation_element = envelope.find(f"{{{SOAP}}}Body")[0]  # type: ignore[index]
        target = next(el for el in operation_element if el.get("Id"))
        for old in operation_element.findall(f"{{{TYPES}}}CallerInformationSystemSignature"):
            operation_element.remove(old)
        holder = etree.SubElement(operation_element, f"{{{TYPES}}}CallerInformationSystemSignature")
        signature = xmlsec.template.create(
            envelope, xmlsec.constants.TransformExclC14N, self.method, ns="ds"
        )
        holder.append(signature)
        ref = xmlsec.template.add_reference(
            signature, xmlsec.constants.TransformSha256, uri="#" + target.get("Id")
        )
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        key_info = xmlsec.template.ensure_key_info(signature)
        xmlsec.template.add_x509_data(key_info)
        ctx = xmlsec.SignatureContext()
        ctx.register_id(target, "Id")
        ctx.key = self.key
        ctx.sign(signature)
        return envelope, http_headers

    def ingress(
        self, envelope: etree._Element, http_headers: dict[str, str], operation: Any
    ) -> tuple[etree._Element, dict[str, str]]:
        body = envelope.find(f"{{{SOAP}}}Body")
        if body is not None and len(body):
            self.replies.append(body[0])
        return envelope, http_headers


def _is_rsa(key_file: Path) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return isinstance(load_pem_private_key(key_file.read_bytes(), None), rsa.RSAPrivateKey)


def served_schema(base_url: str, folder: Path) -> etree.XMLSchema:
    """The 1.1 types and faults schemas as served, fetched over HTTP and compiled."""
    names = [
        "smev-message-exchange-basic-1.1.xsd",
        "smev-message-exchange-types-1.1.xsd",
        "smev-message-exchange-faults-1.1.xsd",
    ]
    for name in names:
        with urllib.request.urlopen(f"{base_url}/ws/xsd/{name}") as reply:
            text = reply.read().decode()
        # Point the absolute imports the server wrote at the fetched copies.
        text = re.sub(r'schemaLocation="[^"]*/([^"/]+\.xsd)"', r'schemaLocation="\1"', text)
        (folder / name).write_text(text)
    driver = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<xs:import namespace="{TYPES}" schemaLocation="{(folder / names[1]).as_uri()}"/>'
        f'<xs:import namespace="{FAULTS}" schemaLocation="{(folder / names[2]).as_uri()}"/>'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.fromstring(driver))


# --- the gateway ---------------------------------------------------------------------


@dataclass
class Setup:
    gateway: GatewayProcess
    keys: Path
    schema: etree.XMLSchema
    signers: dict[str, XmlsecSigner] = field(default_factory=dict)

    def client(self, who: str) -> zeep.Client:
        signer = XmlsecSigner(key_path(self.keys, who), cert_path(self.keys, who))
        self.signers[who] = signer
        return zeep.Client(f"{self.gateway.base_url}/ws?wsdl", plugins=[signer])

    def emitted(self) -> list[etree._Element]:
        return [reply for signer in self.signers.values() for reply in signer.replies]


@pytest.fixture(scope="module")
def setup(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    keys = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys),
            },
            log_path=tmp_path_factory.mktemp("logs") / "gateway.log",
        )
        process.start()
        try:
            schema = served_schema(process.base_url, tmp_path_factory.mktemp("served"))
            yield Setup(process, keys, schema)
        finally:
            process.stop()


def content(name: str) -> etree._Element:
    return etree.fromstring((CONTENT / name).read_bytes())


def selector(root: str) -> dict[str, object]:
    return {
        "Id": "SELECTOR",
        "NamespaceURI": BIRTH,
        "RootElementLocalName": root,
        "Timestamp": datetime.now(UTC),
    }


def timestamp() -> dict[str, object]:
    return {"Id": "TS", "_value_1": datetime.now(UTC)}


def placeholder() -> dict[str, object]:
    """A required signature element for zeep to write; the hook signs in its place."""
    return {"_value_1": etree.Element(f"{{{DS}}}Signature")}


# --- the test ------------------------------------------------------------------------


def test_a_plain_smev3_client_runs_all_seven_operations(setup: Setup) -> None:
    portal, zags = setup.client("PORTAL"), setup.client("ZAGS")
    request_id = uuid1()

    sent = portal.service.SendRequest(
        SenderProvidedRequestData={
            "Id": "REQ",
            "MessageID": request_id,
            "TransactionCode": "T" * 1500,  # 1.1 allows 1500 characters
            "NodeID": "portal-node-1",
            "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
        }
    )
    assert sent.MessageMetadata.MessageId == request_id
    assert sent.MessageMetadata.MessageType == "REQUEST"
    assert sent.MessageMetadata.Status in ("requestIsQueued", "requestIsAcceptedBySmev")
    assert sent.MessageMetadata.DestinationName == "requests.ZAGS"

    stats = zags.service.GetIncomingQueueStatistics(NodeID="zags-node-1", Timestamp=timestamp())
    assert ("requests.ZAGS", 1) in {(q.queueName, q.pendingMessageNumber) for q in stats}

    pulled = zags.service.GetRequest(MessageTypeSelector=selector("BirthRecordRequest"))
    request = pulled.Request
    assert request.SenderProvidedRequestData.MessageID == request_id
    assert request.MessageMetadata.Sender.Mnemonic == "PORTAL"
    assert request.MessageMetadata.MessageType == "REQUEST"

    zags.service.SendResponse(
        SenderProvidedResponseData={
            "Id": "RESP",
            "MessageID": uuid1(),
            "To": request.ReplyTo,
            "MessagePrimaryContent": {"_value_1": content("zags-birth-record.response.xml")},
        }
    )
    zags.service.Ack(AckTargetMessage={"Id": "ACK", "accepted": True, "_value_1": request_id})

    got = portal.service.GetResponse(MessageTypeSelector=selector("BirthRecordResponse"))
    response = got.Response
    assert response.OriginalMessageId == request_id
    assert response.MessageMetadata.MessageType == "RESPONSE"
    portal.service.Ack(
        AckTargetMessage={
            "Id": "ACK",
            "accepted": True,
            "_value_1": response.SenderProvidedResponseData.MessageID,
        }
    )

    categories = []
    while True:
        notice = portal.service.GetStatus(
            Timestamp=timestamp(), CallerInformationSystemSignature=placeholder()
        )
        if notice is None:
            break
        status = notice.AsyncProcessingStatusData.AsyncProcessingStatus
        assert status.OriginalMessageId == request_id
        categories.append(status.StatusCategory)
    assert categories[-1] == "responseIsDelivered"

    # A business status (RequestStatus) is accepted as an interim answer.
    second_id = uuid1()
    portal.service.SendRequest(
        SenderProvidedRequestData={
            "Id": "REQ",
            "MessageID": second_id,
            "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
        }
    )
    second = zags.service.GetRequest(MessageTypeSelector=selector("BirthRecordRequest")).Request
    zags.service.SendResponse(
        SenderProvidedResponseData={
            "Id": "RESP",
            "MessageID": uuid1(),
            "To": second.ReplyTo,
            "RequestStatus": {
                "StatusCode": 3,
                "StatusParameter": [{"Key": "step", "Value": "archive"}],
                "StatusDescription": "looking in the paper archive",
            },
        }
    )
    zags.service.Ack(AckTargetMessage={"Id": "ACK", "accepted": True, "_value_1": second_id})
    interim = portal.service.GetResponse(MessageTypeSelector=selector("BirthRecordResponse"))
    assert interim.Response.SenderProvidedResponseData.RequestStatus.StatusCode == 3

    emitted = setup.emitted()
    answered = {etree.QName(reply).localname for reply in emitted}
    assert {op + "Response" for op in OPERATIONS} <= answered, answered
    for reply in emitted:
        assert setup.schema.validate(reply), (etree.QName(reply).localname, setup.schema.error_log)


@pytest.mark.parametrize(
    ("who", "call", "element"),
    [
        (
            "MVD_MIGR",  # a provider that may not request
            lambda c: c.service.SendRequest(
                SenderProvidedRequestData={
                    "Id": "REQ",
                    "MessageID": uuid1(),
                    "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
                }
            ),
            "AccessDenied",
        ),
        (
            "PORTAL",
            lambda c: c.service.SendRequest(
                SenderProvidedRequestData={
                    "Id": "REQ",
                    "MessageID": str(uuid.uuid4()),
                    "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
                }
            ),
            "InvalidMessageIdFormat",
        ),
        (
            "PORTAL",
            lambda c: c.service.SendRequest(
                SenderProvidedRequestData={
                    "Id": "REQ",
                    "MessageID": uuid1(),
                    "MessagePrimaryContent": {
                        "_value_1": etree.fromstring(b'<x:Unknown xmlns:x="urn:nobody"/>')
                    },
                }
            ),
            "BusinessDataTypeIsNotSupported",
        ),
        (
            "ZAGS",
            lambda c: c.service.Ack(
                AckTargetMessage={"Id": "ACK", "accepted": True, "_value_1": uuid1()}
            ),
            "TargetMessageIsNotFound",
        ),
    ],
    ids=["access_denied", "uuid_v4", "unknown_type", "ack_unknown"],
)
def test_refusals_are_the_named_faults_of_the_operation(
    setup: Setup, who: str, call: Any, element: str
) -> None:
    client = setup.client(who)
    with pytest.raises(zeep.exceptions.Fault) as info:
        call(client)
    assert info.value.code.split(".")[0] in ("soap:Client", "soap:Server")
    detail = info.value.detail
    named = [c for c in detail if etree.QName(c).namespace == FAULTS]
    assert [etree.QName(c).localname for c in named] == [element]
    assert setup.schema.validate(named[0]), setup.schema.error_log
