"""``smevbus serve`` on real RabbitMQ and PostgreSQL, driven by plain zeep clients.

An integrator's stack: zeep built from ``/ws?wsdl`` plus a signing hook
(:class:`gateway.client.zeep_signing.SigningPlugin`). All seven 1.1 operations, and a
refusal arriving as a named SOAP Fault with its stable code after the faultcode's dot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from gateway.client.zeep_signing import SigningPlugin
from gateway.core.clock import MessageIdSource, SystemClock
from gateway.crypto.devpki import init_dev_pki
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.crypto.xmldsig import XmlVerifier
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from tests.integration import store_fixtures

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "tests" / "data" / "content"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_dir = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys_dir, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    return keys_dir


@pytest.fixture(scope="module")
def gateway(
    keys: Path, amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
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
            yield process
        finally:
            process.stop()


@pytest.fixture(scope="module")
def verifier(keys: Path) -> XmlVerifier:
    return load_verifier(keys, SystemClock())


def client(gateway: GatewayProcess, keys: Path, verifier: XmlVerifier, who: str) -> zeep.Client:
    return zeep.Client(
        f"{gateway.base_url}/ws?wsdl", plugins=[SigningPlugin(load_signer(keys, who), verifier)]
    )


def content(name: str) -> etree._Element:
    return etree.fromstring((CONTENT / name).read_bytes())


BIRTH = "urn://smevbus/types/zags/birth-record/1.0"


def selector(root: str) -> dict[str, object]:
    # zeep wants the optional NamespaceURI/RootElementLocalName pair given.
    return {
        "Id": "SIGNED_BY_CALLER",
        "NamespaceURI": BIRTH,
        "RootElementLocalName": root,
        "Timestamp": datetime.now(UTC),
    }


def test_wsdl_lists_the_seven_operations(gateway: GatewayProcess) -> None:
    wsdl_client = zeep.Client(f"{gateway.base_url}/ws?wsdl")
    operations = set(wsdl_client.service._binding._operations)
    assert operations == {
        "SendRequest",
        "GetRequest",
        "SendResponse",
        "GetResponse",
        "Ack",
        "GetStatus",
        "GetIncomingQueueStatistics",
    }
    assert wsdl_client.service._binding_options["address"] == f"{gateway.base_url}/ws"


def test_answers_do_not_name_the_server_software(gateway: GatewayProcess) -> None:
    answer = httpx.get(f"{gateway.base_url}/ws?wsdl", timeout=10)
    assert answer.status_code == 200
    assert "date" in answer.headers
    assert "server" not in answer.headers


def test_six_operations_round_trip(
    gateway: GatewayProcess, keys: Path, verifier: XmlVerifier
) -> None:
    portal = client(gateway, keys, verifier, "PORTAL")
    zags = client(gateway, keys, verifier, "ZAGS")
    ids = MessageIdSource(SystemClock())
    request_id = str(ids.new())

    sent = portal.service.SendRequest(
        SenderProvidedRequestData={
            "Id": "SIGNED_BY_CONSUMER",
            "MessageID": request_id,
            "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
        }
    )
    assert sent.MessageMetadata.MessageId == request_id
    assert sent.MessageMetadata.MessageType == "REQUEST"
    assert sent.MessageMetadata.Status == "requestIsAcceptedBySmev"
    assert sent.MessageMetadata.Recipient.Mnemonic == "ZAGS"

    pulled = zags.service.GetRequest(MessageTypeSelector=selector("BirthRecordRequest"))
    request = pulled.Request  # zeep unwraps the single RequestMessage
    assert request.SenderProvidedRequestData.MessageID == request_id
    assert request.MessageMetadata.Sender.Mnemonic == "PORTAL"

    answered = zags.service.SendResponse(
        SenderProvidedResponseData={
            "Id": "SIGNED_BY_PROVIDER",
            "MessageID": str(ids.new()),
            "To": request.ReplyTo,
            "MessagePrimaryContent": {"_value_1": content("zags-birth-record.response.xml")},
        }
    )
    assert answered.MessageMetadata.Recipient.Mnemonic == "PORTAL"
    zags.service.Ack(
        AckTargetMessage={"Id": "SIGNED_BY_CALLER", "accepted": True, "_value_1": request_id}
    )

    got = portal.service.GetResponse(MessageTypeSelector=selector("BirthRecordResponse"))
    response = got.Response  # zeep unwraps the single ResponseMessage
    assert response.OriginalMessageId == request_id
    record = response.SenderProvidedResponseData.MessagePrimaryContent._value_1
    assert etree.QName(record).localname == "BirthRecordResponse"
    portal.service.Ack(
        AckTargetMessage={
            "Id": "SIGNED_BY_CALLER",
            "accepted": True,
            "_value_1": response.SenderProvidedResponseData.MessageID,
        }
    )

    categories = []
    while True:
        status = portal.service.GetStatus(
            Timestamp={"Id": "SIGNED_BY_CALLER", "_value_1": datetime.now(UTC)},
            CallerInformationSystemSignature=placeholder_signature(),
        )
        if status is None or status.AsyncProcessingStatusData is None:
            break
        notice = status.AsyncProcessingStatusData.AsyncProcessingStatus
        assert notice.OriginalMessageId == request_id
        categories.append(notice.StatusCategory)
    assert categories[-1] == "responseIsDelivered"
    assert portal.service.GetResponse(MessageTypeSelector=selector("BirthRecordResponse")) is None

    stats = zags.service.GetIncomingQueueStatistics(
        Timestamp={"Id": "SIGNED_BY_CALLER", "_value_1": datetime.now(UTC)}
    )
    assert {(q.queueName, q.pendingMessageNumber) for q in stats} == {
        ("requests.ZAGS", 0),
        ("responses.ZAGS", 0),
    }


def placeholder_signature() -> dict[str, object]:
    """GetStatus requires the signature element in the schema; the plugin replaces it."""
    return {"_value_1": etree.Element("{http://www.w3.org/2000/09/xmldsig#}Signature")}


def test_refusal_is_a_fault_with_its_code(
    gateway: GatewayProcess, keys: Path, verifier: XmlVerifier
) -> None:
    mvd = client(gateway, keys, verifier, "MVD_MIGR")  # a provider may not request
    with pytest.raises(zeep.exceptions.Fault) as info:
        mvd.service.SendRequest(
            SenderProvidedRequestData={
                "Id": "SIGNED_BY_CONSUMER",
                "MessageID": str(MessageIdSource(SystemClock()).new()),
                "MessagePrimaryContent": {"_value_1": content("zags-birth-record.request.xml")},
            }
        )
    assert info.value.code == "soap:Client.access_denied"
    assert info.value.detail.find(".//{*}AccessDenied") is not None
    assert "MVD_MIGR is not allowed to request" in info.value.message
