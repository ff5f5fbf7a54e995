"""Shared material for the crypto tests: one dev PKI per test session, and documents.

Plain functions (cached) rather than pytest fixtures, so test modules import them
without fixture-shadowing tricks.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from gateway.core.clock import FakeClock
from gateway.crypto import devpki
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.trust import TrustStore
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier

BUS_NS = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
BIZ_NS = "urn://x-artefacts-zags-ru/birth-certificate/1.0.0"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
START = datetime(2026, 1, 1, tzinfo=UTC)

EC = "EC_AGENCY"
RSA = "RSA_AGENCY"


@dataclass(frozen=True)
class DevPKI:
    keys_dir: Path
    ca: devpki.Issued

    def signer(self, mnemonic: str, profile: SignatureProfile) -> XmlSigner:
        return _signer(self.keys_dir, mnemonic, profile)

    def verifier(self, clock: FakeClock | None = None) -> XmlVerifier:
        return XmlVerifier(TrustStore.from_dir(self.keys_dir, clock or FakeClock(START)))


@functools.cache
def dev_pki() -> DevPKI:
    """A keys directory with an EC and an RSA participant, made once per session."""
    keys_dir = Path(tempfile.mkdtemp(prefix="smevbus-pki-"))
    atexit.register(shutil.rmtree, keys_dir, ignore_errors=True)
    clock = FakeClock(START)
    devpki.init_dev_pki(keys_dir, {EC: "EC Agency"}, key_type="ec", clock=clock)
    devpki.init_dev_pki(keys_dir, {RSA: "RSA Agency"}, key_type="rsa", clock=clock)
    return DevPKI(keys_dir, devpki.load_ca(keys_dir))


@functools.cache
def _signer(keys_dir: Path, mnemonic: str, profile: SignatureProfile) -> XmlSigner:
    return XmlSigner.from_pem(
        devpki.key_path(keys_dir, mnemonic).read_bytes(),
        devpki.cert_path(keys_dir, mnemonic).read_bytes(),
        profile,
    )


def signer_for(issued: devpki.Issued, profile: SignatureProfile) -> XmlSigner:
    return XmlSigner.from_pem(issued.key_pem(), issued.cert_pem(), profile)


REQUEST = f"""\
<soap:Envelope xmlns:soap="{SOAP_NS}">
  <soap:Body>
    <SendRequestRequest xmlns="{BUS_NS}">
      <SenderProvidedRequestData Id="SIGNED_BY_CONSUMER">
        <MessageID>db0486d0-3c08-11f0-9a6b-0242ac120002</MessageID>
        <MessagePrimaryContent>
          <biz:BirthRequest xmlns:biz="{BIZ_NS}" xmlns:unused="urn:unused" kind="copy">
            <biz:Person surname="Иванов" biz:role="child"
              >Иван &amp; сын &lt;младший&gt;</biz:Person>
            <biz:Empty/>
          </biz:BirthRequest>
        </MessagePrimaryContent>
        <TestMessage/>
      </SenderProvidedRequestData>
      <CallerInformationSystemSignature/>
    </SendRequestRequest>
  </soap:Body>
</soap:Envelope>
"""


def request_doc() -> tuple[etree._Element, etree._Element, etree._Element]:
    """(document root, SenderProvidedRequestData, CallerInformationSystemSignature)."""
    root = etree.fromstring(REQUEST.encode())
    target = root.find(f".//{{{BUS_NS}}}SenderProvidedRequestData")
    into = root.find(f".//{{{BUS_NS}}}CallerInformationSystemSignature")
    assert target is not None
    assert into is not None
    return root, target, into


def reparse(root: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    """Serialize and parse again, as the receiving side sees the message."""
    new_root = etree.fromstring(etree.tostring(root))
    target = new_root.find(f".//{{{BUS_NS}}}SenderProvidedRequestData")
    sig = new_root.find(f".//{{{DS_NS}}}Signature")
    assert target is not None
    assert sig is not None
    return new_root, target, sig
