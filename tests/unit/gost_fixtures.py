"""GOST R 34.10-2012 material shared by the tests.

* :data:`needs_gost`: skip when OpenSSL's gost engine is missing (fails under
  ``CI=true`` instead, at import);
* ``gostcrypto`` (pure Python, the independent implementation) in the XMLDSig byte
  layout: :func:`gostcrypto_verifies` checks one of our SignatureValues,
  :class:`GostcryptoKey` signs as a participant whose key never touches the engine, and
  :func:`independent_signature` builds a whole SMEV-profile ds:Signature with lxml's
  exclusive c14n, the ``smev_transform`` package and gostcrypto: no code of
  ``gateway.crypto``;
* :func:`gost_bus_pki`: the registry's participants on a GOST CA (the bus, PORTAL and
  ZAGS on GOST keys, MVD_MIGR on EC and FNS on RSA: a mixed registry), with the bad
  certificates of :class:`~gateway.testing.bus.BusPKI` made GOST.
"""

from __future__ import annotations

import atexit
import base64
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import gostcrypto
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.core.clock import FakeClock
from gateway.crypto import devpki, gost
from gateway.crypto.gost import pki as gost_pki
from gateway.testing.bus import START, STRANGER, BusPKI, registry
from tests.unit.crypto_fixtures import BIZ_NS, request_doc

GOST_MISSING = gost.unavailable_reason()
if GOST_MISSING is not None and os.environ.get("CI", "").lower() == "true":
    pytest.fail(f"{GOST_MISSING} (CI=true: the GOST backend must be installed)", pytrace=False)
needs_gost = pytest.mark.skipif(
    GOST_MISSING is not None, reason=f"GOST backend missing: {GOST_MISSING}"
)

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SMEV_TRANSFORM = "urn://smev-gov-ru/xmldsig/transform"
GOST_SIGNATURE = "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
GOST_DIGEST = "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256"
#: gostcrypto's curve names by parameter set OID (CryptoPro A is TC26 paramSetB).
GOSTCRYPTO_CURVES = {
    "1.2.643.2.2.35.1": "id-tc26-gost-3410-2012-256-paramSetB",
    "1.2.643.7.1.2.1.1.1": "id-tc26-gost-3410-2012-256-paramSetA",
}
#: The GOST bus's participants whose keys are not GOST.
MIXED: dict[str, devpki.KeyType] = {"MVD_MIGR": "ec", "FNS": "rsa"}


def streebog256(data: bytes) -> bytes:
    """gostcrypto's Streebog-256 (the digest bytes as XMLDSig writes them)."""
    return bytes(gostcrypto.gosthash.new("streebog256", data=data).digest())


def _oid_der(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return bytes([0x06, len(body)]) + bytes(body)


def _curve_of(spki: bytes) -> gostcrypto.gostsignature.GOST34102012:
    paramset = next(oid for oid in GOSTCRYPTO_CURVES if _oid_der(oid) in spki)
    return gostcrypto.gostsignature.new(
        gostcrypto.gostsignature.MODE_256,
        gostcrypto.gostsignature.CURVES_R_1323565_1_024_2019[GOSTCRYPTO_CURVES[paramset]],
    )


def gostcrypto_verifies(cert_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Whether gostcrypto accepts ``signature`` (an XMLDSig SignatureValue) over ``data``
    with the certificate's key.

    gostcrypto reads the digest big-endian and writes r || s; the SignatureValue is
    s || r over a little-endian digest (as xmlsec and CryptoPro write it), and the
    certificate's point is x || y with each half little-endian.
    """
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.public_key_algorithm_oid.dotted_string == "1.2.643.7.1.1.1.1"
    spki = gost.GostPublicKey.from_certificate(cert_pem).der()
    assert spki[-66:-64] == b"\x04\x40"
    x_le, y_le = spki[-64:-32], spki[-32:]
    return bool(
        _curve_of(spki).verify(
            x_le[::-1] + y_le[::-1], streebog256(data)[::-1], signature[32:] + signature[:32]
        )
    )


@dataclass(frozen=True)
class GostcryptoKey:
    """A participant key held by gostcrypto (CryptoPro A curve) and its certificate.

    Only the certificate is made by our PKI code (the CA is ours to trust); every
    signature is gostcrypto's.
    """

    private: bytes
    cert_pem: bytes

    @classmethod
    def issue(
        cls, ca: devpki.Issued, mnemonic: str, *, not_before: datetime, private: bytes
    ) -> GostcryptoKey:
        public_be = bytes(_cryptopro_a().public_key_generate(bytearray(private)))
        # The SubjectPublicKeyInfo: the algorithm part of any CryptoPro A key, then the
        # point x || y little-endian.
        prefix = gost.generate_key().public_key().der()[:-64]
        spki = prefix + public_be[:32][::-1] + public_be[32:][::-1]
        assert isinstance(ca.key, gost.GostPrivateKey)
        cert = gost_pki.issue_certificate(
            ca.key,
            ca.cert_pem(),
            spki,
            mnemonic,
            serial=x509.random_serial_number(),
            not_before=not_before,
            not_after=not_before + timedelta(days=365),
        )
        return cls(private, cert)

    def sign(self, data: bytes) -> bytes:
        """The SignatureValue bytes (s || r) over Streebog-256 of ``data``."""
        r_s = bytes(
            _cryptopro_a().sign(bytearray(self.private), bytearray(streebog256(data)[::-1]))
        )
        return r_s[32:] + r_s[:32]


def _cryptopro_a() -> gostcrypto.gostsignature.GOST34102012:
    return gostcrypto.gostsignature.new(
        gostcrypto.gostsignature.MODE_256,
        gostcrypto.gostsignature.CURVES_R_1323565_1_024_2019[GOSTCRYPTO_CURVES["1.2.643.2.2.35.1"]],
    )


def plain_request_doc() -> tuple[etree._Element, etree._Element, etree._Element]:
    """:func:`~tests.unit.crypto_fixtures.request_doc` with text the ``smev_transform``
    package handles: it writes ``&`` and ``<`` unescaped (our transform, and the Java
    reference, escape them)."""
    root, target, into = request_doc()
    person = target.find(f".//{{{BIZ_NS}}}Person")
    assert person is not None
    person.text = "Иван, сын"
    return root, target, into


def smev_reference(target: etree._Element) -> bytes:
    """``target`` after exclusive c14n and the SMEV transform of the PyPI package."""
    import smev_transform

    canonical = etree.tostring(target, method="c14n", exclusive=True).decode()
    result: str = smev_transform.Transform().process(canonical)
    return result.encode()


def independent_signature(
    target: etree._Element, into: etree._Element, key: GostcryptoKey
) -> etree._Element:
    """Sign ``target`` (by its Id) into ``into`` as SMEV 3 does, without gateway.crypto."""
    digest = base64.b64encode(streebog256(smev_reference(target))).decode()
    cert_der = x509.load_pem_x509_certificate(key.cert_pem).public_bytes(Encoding.DER)
    template = f"""<ds:Signature xmlns:ds="{DS_NS}"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>
<ds:SignatureMethod Algorithm="{GOST_SIGNATURE}"/>
<ds:Reference URI="#{target.get("Id")}"><ds:Transforms>
<ds:Transform Algorithm="{EXC_C14N}"/><ds:Transform Algorithm="{SMEV_TRANSFORM}"/>
</ds:Transforms><ds:DigestMethod Algorithm="{GOST_DIGEST}"/>
<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>
<ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate>
{base64.encodebytes(cert_der).decode()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""
    signature = etree.fromstring(template)
    into.append(signature)
    signed_info = signature.find(f"{{{DS_NS}}}SignedInfo")
    value = signature.find(f"{{{DS_NS}}}SignatureValue")
    assert signed_info is not None
    assert value is not None
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    value.text = base64.b64encode(key.sign(canonical)).decode()
    return signature


# --- the whole bus on GOST -----------------------------------------------------------------


@functools.cache
def gost_bus_pki() -> BusPKI:
    """The registry on a GOST CA, made once per session (see the module docstring)."""
    keys_dir = Path(tempfile.mkdtemp(prefix="smevbus-gost-bus-pki-"))
    atexit.register(shutil.rmtree, keys_dir, ignore_errors=True)
    clock = FakeClock(START)
    reg = registry()
    names = {p.mnemonic: p.name for p in reg.participants}
    names[reg.bus_mnemonic] = "smevbus"
    devpki.init_dev_pki(keys_dir, names, key_type=devpki.GOST, key_types=MIXED, clock=clock)
    ca = devpki.load_ca(keys_dir)
    g = devpki.GOST
    return BusPKI(
        keys_dir=keys_dir,
        ca=ca,
        expired=devpki.issue_expired(ca, "PORTAL", clock, key_type=g),
        not_yet_valid=devpki.issue_not_yet_valid(ca, "PORTAL", clock, key_type=g),
        untrusted=devpki.issue_untrusted("PORTAL", clock, key_type=g),
        revoked=devpki.issue_revoked(keys_dir, "PORTAL", clock, key_type=g),
        stranger=devpki.issue(ca, STRANGER, clock, key_type=g),
    )
