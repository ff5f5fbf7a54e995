"""``smevbus serve --workers 2`` over HTTPS with required TLS client certificates.

The dev PKI's gateway certificate (``tls-server``) and the participants' own
certificates as TLS client certificates, the dev CA as client CA. A participant
connecting with its own certificate is served; a connection made with one
participant's certificate carrying another's signature is refused ``access_denied``;
no client certificate, no TLS handshake; plain HTTP is not served at all.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.client.http import GatewayUnreachable, SoapHttp, tls_context
from gateway.client.participant import ParticipantClient
from gateway.core.clock import MessageIdSource, SystemClock
from gateway.core.errors import AccessDenied, NotFound
from gateway.crypto.devpki import TLS_SERVER, cert_path, init_dev_pki, key_path
from gateway.crypto.envelope import sign_element
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.testing.journal import journal_report_at
from gateway.testing.processes import GatewayProcess, fresh_database, isolated_vhost
from gateway.xml import messages as m
from gateway.xml.parse import parse_secure
from gateway.xml.soap import wrap_envelope
from tests.integration import store_fixtures

postgres_url = store_fixtures.postgres_url

ROOT = Path(__file__).resolve().parents[2]
BIRTH_REQUEST = ROOT / "tests" / "data" / "content" / "zags-birth-record.request.xml"
PARTICIPANTS = {"PORTAL": "portal", "ZAGS": "zags", "MVD_MIGR": "mvd", "FNS": "fns"}

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Gateway:
    process: GatewayProcess
    keys: Path

    @property
    def ws(self) -> str:
        return self.process.base_url + "/ws"

    def tls(self, who: str | None) -> ssl.SSLContext:
        """Trusting the dev CA, presenting ``who``'s certificate (None: no certificate)."""
        return tls_context(
            ca_file=self.keys / "ca.cert.pem",
            cert_file=None if who is None else cert_path(self.keys, who),
            key_file=None if who is None else key_path(self.keys, who),
        )

    def client(self, who: str, call: SoapHttp) -> ParticipantClient:
        clock = SystemClock()
        return ParticipantClient(
            signer=load_signer(self.keys, who),
            verifier=load_verifier(self.keys, clock),
            clock=clock,
            call=call,
        )


@pytest.fixture(scope="module")
def gateway(
    amqp_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    keys = tmp_path_factory.mktemp("keys")
    init_dev_pki(keys, {**PARTICIPANTS, "SMEVBUS": "bus"}, clock=SystemClock())
    with isolated_vhost(amqp_url) as vhost_url, fresh_database() as db_url:
        process = GatewayProcess(
            env={
                "SMEVBUS_TRANSPORT": "amqp",
                "SMEVBUS_AMQP_URL": vhost_url,
                "SMEVBUS_DATABASE_URL": db_url,
                "SMEVBUS_KEYS_DIR": str(keys),
                "SMEVBUS_HTTP_WORKERS": "2",
                "SMEVBUS_TLS_CERT_FILE": str(cert_path(keys, TLS_SERVER)),
                "SMEVBUS_TLS_KEY_FILE": str(key_path(keys, TLS_SERVER)),
                "SMEVBUS_TLS_CLIENT_CA_FILE": str(keys / "ca.cert.pem"),
                "SMEVBUS_TLS_CLIENT_CERT": "required",
            },
            log_path=tmp_path_factory.mktemp("logs") / "gateway.log",
            tls=tls_context(
                ca_file=keys / "ca.cert.pem",
                cert_file=cert_path(keys, "PORTAL"),
                key_file=key_path(keys, "PORTAL"),
            ),
        )
        process.start()
        try:
            yield Gateway(process, keys)
        finally:
            process.stop()


def send_request_soap(gateway: Gateway) -> tuple[uuid.UUID, bytes]:
    message_id = MessageIdSource(SystemClock()).new()
    body = m.build_send_request(message_id, parse_secure(BIRTH_REQUEST.read_bytes()))
    return message_id, wrap_envelope(sign_element(body, load_signer(gateway.keys, "PORTAL")))


async def test_participants_with_their_own_certificates_are_served(gateway: Gateway) -> None:
    # New connections per call: both worker processes take part.
    async with (
        SoapHttp(gateway.ws, tls=gateway.tls("PORTAL"), keep_alive=False) as as_portal,
        SoapHttp(gateway.ws, tls=gateway.tls("ZAGS"), keep_alive=False) as as_zags,
    ):
        portal, zags = gateway.client("PORTAL", as_portal), gateway.client("ZAGS", as_zags)
        sent = await portal.send_request(parse_secure(BIRTH_REQUEST.read_bytes()))
        delivery = await zags.get_request()
        assert delivery is not None
        assert delivery.metadata.message_id == sent.message_id
        await zags.ack(sent.message_id)
        report = await journal_report_at(
            gateway.process.env["SMEVBUS_DATABASE_URL"], sent.message_id
        )
        assert [t.state for t in report.history] == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]


async def test_one_participants_connection_carries_no_others_signature(gateway: Gateway) -> None:
    async with (
        SoapHttp(gateway.ws, tls=gateway.tls("PORTAL")) as as_portal,
        SoapHttp(gateway.ws, tls=gateway.tls("ZAGS")) as as_zags,
    ):
        portal = gateway.client("PORTAL", as_portal)
        sent = await portal.send_request(parse_secure(BIRTH_REQUEST.read_bytes()))

        # ZAGS's signed GetRequest over PORTAL's TLS connection.
        zags_over_portal = gateway.client("ZAGS", as_portal)
        with pytest.raises(AccessDenied) as refused:
            await zags_over_portal.get_request()
        assert "TLS client certificate" in refused.value.message
        assert "belongs to PORTAL" in refused.value.message
        assert "signed by ZAGS" in refused.value.message

        zags = gateway.client("ZAGS", as_zags)  # the queue was not touched
        delivery = await zags.get_request()
        assert delivery is not None
        assert delivery.metadata.message_id == sent.message_id
        await zags.ack(sent.message_id)


async def test_without_a_client_certificate_there_is_no_handshake(gateway: Gateway) -> None:
    message_id, soap = send_request_soap(gateway)
    async with SoapHttp(gateway.ws, tls=gateway.tls(None)) as anonymous:
        with pytest.raises(GatewayUnreachable):
            await anonymous(soap)
    with pytest.raises(NotFound):  # never reached the bus
        await journal_report_at(gateway.process.env["SMEVBUS_DATABASE_URL"], message_id)


async def test_plain_http_is_not_served(gateway: Gateway) -> None:
    message_id, soap = send_request_soap(gateway)
    async with SoapHttp(f"http://127.0.0.1:{gateway.process.port}/ws") as plain:
        with pytest.raises(GatewayUnreachable):
            await plain(soap)
    with pytest.raises(NotFound):  # never reached the bus
        await journal_report_at(gateway.process.env["SMEVBUS_DATABASE_URL"], message_id)
