"""``smevbus serve`` on real RabbitMQ and PostgreSQL, driven by plain zeep clients.

An integrator's stack: zeep built from ``/ws?wsdl`` plus a signing hook
(:class:`gateway.client.zeep_signing.SigningPlugin`). All six operations, and a
refusal arriving as a SOAP Fault with its stable code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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


def selector() -> dict[str, object]:
    return {"Id": "SIGNED_BY_CALLER", "Timestamp": datetime.now(UTC)}


def test_wsdl_lists_the_six_operations(gateway: GatewayProcess) -> None:
    wsdl_client = zeep.Client(f"{gateway.base_url}/ws?wsdl")
    operations = set(wsdl_client.service._binding._operations)
    assert operations == {
        "SendRequest",
        "GetRequest",
        "SendResponse",
        "GetResponse",
        "Ack",
        "GetStatus",
    }
    assert wsdl_client.service._binding_options["address"] == f"{gateway.base_url}/ws"


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
    assert sent.MessageMetadata.MessageID == request_id
    assert sent.MessageMetadata.Status == "QUEUED"
    assert sent.MessageMetadata.Recipient.Mnemonic == "ZAGS"

    pulled = zags.service.GetRequest(MessageTypeSelector=selector())
    request = pulled.RequestMessage.Request
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
    zags.service.Ack(AckTargetMessage={"Id": "SIGNED_BY_CALLER", "_value_1": request_id})

    got = portal.service.GetResponse(MessageTypeSelector=selector())
    response = got.ResponseMessage.Response
    assert response.OriginalMessageId == request_id
    record = response.SenderProvidedResponseData.MessagePrimaryContent._value_1
    assert etree.QName(record).localname == "BirthRecordResponse"
    portal.service.Ack(
        AckTargetMessage={
            "Id": "SIGNED_BY_CALLER",
            "_value_1": response.SenderProvidedResponseData.MessageID,
        }
    )

    status = portal.service.GetStatus(MessageID={"Id": "SIGNED_BY_CALLER", "_value_1": request_id})
    assert status.Status == "RESPONSE_DELIVERED"
    assert [t.State for t in status.History.Transition] == [
        "ACCEPTED",
        "QUEUED",
        "DELIVERED",
        "RESPONDED",
        "RESPONSE_DELIVERED",
    ]
    assert portal.service.GetResponse(MessageTypeSelector=selector()).ResponseMessage is None


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
    assert info.value.code == "soap:Client"
    code = info.value.detail.find(".//{*}Code")
    assert code is not None
    assert code.text == "access_denied"
    assert "MVD_MIGR is not allowed to request" in info.value.message
