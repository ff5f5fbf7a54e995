"""GOST R 34.10-2012 / Streebog-256 backend (OpenSSL's gost engine through ctypes).

Independent checks: the standard's Streebog test messages, the pure-Python
``gostcrypto`` package (hash, and signatures in both directions), libxmlsec1's
published GOST 2012-256 XMLDSig test vector, and for the dev PKI ``cryptography``'s
certificate parser.

Skipped when the engine is missing, except under ``CI=true`` where that fails.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gostcrypto
import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.crypto import gost
from gateway.crypto.gost import Curve, GostError, GostPrivateKey, GostPublicKey, pki

_reason = gost.unavailable_reason()
if _reason is not None and os.environ.get("CI", "").lower() == "true":
    pytest.fail(f"{_reason} (CI=true: the GOST backend must be installed)", pytrace=False)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"GOST backend missing: {_reason}")

DS = "http://www.w3.org/2000/09/xmldsig#"
XMLSEC_VECTOR = Path(__file__).parents[1] / "data" / "xmlsec" / "enveloped-gost2012-256.xml"
# gostcrypto's names for our curves (CryptoPro A is the TC26 256-bit paramSetB curve).
GOSTCRYPTO_CURVE = {
    Curve.CRYPTOPRO_A: "id-tc26-gost-3410-2012-256-paramSetB",
    Curve.TC26_A: "id-tc26-gost-3410-2012-256-paramSetA",
}
# DER of each curve's parameter-set OID, as it appears in SubjectPublicKeyInfo.
CURVE_OID_DER = {
    Curve.CRYPTOPRO_A: bytes.fromhex("06072a850302022301"),  # 1.2.643.2.2.35.1
    Curve.TC26_A: bytes.fromhex("06092a8503070102010101"),  # 1.2.643.7.1.2.1.1.1
}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _gostcrypto_signer(curve: Curve) -> gostcrypto.gostsignature.GOST34102012:
    return gostcrypto.gostsignature.new(
        gostcrypto.gostsignature.MODE_256,
        gostcrypto.gostsignature.CURVES_R_1323565_1_024_2019[GOSTCRYPTO_CURVE[curve]],
    )


def _gostcrypto_public(key: GostPublicKey) -> bytes:
    """gostcrypto's public key (x || y big-endian) from our SubjectPublicKeyInfo, whose
    last 66 bytes are OCTET STRING (04 40) of x || y little-endian."""
    der = key.der()
    assert der[-66:-64] == b"\x04\x40"
    x_le, y_le = der[-64:-32], der[-32:]
    return x_le[::-1] + y_le[::-1]


# --- Streebog-256 --------------------------------------------------------------------

# GOST R 34.11-2012, Appendix A. The standard writes messages and hashes as numbers,
# most significant byte first; the byte strings are those numbers reversed.
M1 = bytes.fromhex(
    "323130393837363534333231303938373635343332313039383736353433323130"
    "393837363534333231303938373635343332313039383736353433323130"
)[::-1]
H256_M1 = bytes.fromhex("00557be5e584fd52a449b16b0251d05d27f94ab76cbaa6da890b59d8ef1e159d")[::-1]
M2 = bytes.fromhex(
    "fbe2e5f0eee3c820fbeafaebef20fffbf0e1e0f0f520e0ed20e8ece0ebe5f0f2f120fff0eeec20f120faf2"
    "fee5e2202ce8f6f3ede220e8e6eee1e8f0f2d1202ce8f0f2e5e220e5d1"
)[::-1]
H256_M2 = bytes.fromhex("508f7e553c06501d749a66fc28c6cac0b005746d97537fa85d9e40904efed29d")[::-1]


def test_streebog256_standard_examples() -> None:
    assert M1 == b"012345678901234567890123456789012345678901234567890123456789012"
    assert gost.streebog256(M1) == H256_M1
    assert M2.decode("cp1251").startswith("Се ветри, Стрибожи внуци")
    assert gost.streebog256(M2) == H256_M2


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_streebog256_agrees_with_gostcrypto(data: bytes) -> None:
    assert gost.streebog256(data) == gostcrypto.gosthash.new("streebog256", data=data).digest()


# --- signatures and their byte layout -------------------------------------------------


@pytest.mark.parametrize("curve", list(Curve))
def test_sign_verify_roundtrip_and_tampering(curve: Curve) -> None:
    key = gost.generate_key(curve)
    public = key.public_key()
    assert CURVE_OID_DER[curve] in public.der()
    data = b"<SignedInfo>canonical bytes</SignedInfo>"
    signature = key.sign(data)
    assert len(signature) == gost.SIGNATURE_SIZE
    assert public.verify(data, signature)
    assert public.verify_digest(gost.streebog256(data), signature)
    assert not public.verify(data + b" ", signature)
    flipped = bytearray(signature)
    flipped[10] ^= 1
    assert not public.verify(data, bytes(flipped))
    assert not public.verify(data, signature[:-1])
    assert not gost.generate_key(curve).public_key().verify(data, signature)


@pytest.mark.parametrize("curve", list(Curve))
def test_backend_signature_verifies_in_gostcrypto(curve: Curve) -> None:
    """The engine writes s || r and reads the digest little-endian; gostcrypto wants
    r || s and a big-endian digest."""
    key = gost.generate_key(curve)
    data = b"signed by OpenSSL's gost engine"
    digest, signature = gost.streebog256(data), key.sign(data)
    public = _gostcrypto_public(key.public_key())
    signer = _gostcrypto_signer(curve)
    assert signer.verify(public, digest[::-1], signature[32:] + signature[:32])
    # Each conversion is needed: without either one the signature does not verify.
    assert not signer.verify(public, digest, signature[32:] + signature[:32])
    assert not signer.verify(public, digest[::-1], signature)
    tampered = gost.streebog256(data + b"!")
    assert not signer.verify(public, tampered[::-1], signature[32:] + signature[:32])


@pytest.mark.parametrize("curve", list(Curve))
def test_gostcrypto_signature_verifies_in_backend(curve: Curve) -> None:
    signer = _gostcrypto_signer(curve)
    private = bytearray(
        bytes.fromhex("7a929ade789bb9be10ed359dd39a72c11b60961f49397eee1d19ce9891ec3b28")
    )
    public_be = signer.public_key_generate(private)
    # A SubjectPublicKeyInfo for gostcrypto's point: the algorithm part from one of our
    # keys on the same curve, then x || y little-endian.
    prefix = gost.generate_key(curve).public_key().der()[:-64]
    public = GostPublicKey.from_der(prefix + public_be[:32][::-1] + public_be[32:][::-1])
    data = b"signed by gostcrypto"
    digest = gost.streebog256(data)
    r_s = bytes(signer.sign(private, bytearray(digest[::-1])))
    assert public.verify(data, r_s[32:] + r_s[:32])
    assert not public.verify(data, r_s)
    assert not public.verify(data + b"!", r_s[32:] + r_s[:32])


def test_key_pem_roundtrip_and_errors() -> None:
    key = gost.generate_key()
    pem = key.pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = GostPrivateKey.from_pem(pem)
    assert again.public_key().der() == key.public_key().der()
    assert key.public_key().verify(b"x", again.sign(b"x"))
    with pytest.raises(GostError, match="PKCS#8"):
        GostPrivateKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(GostError, match="no PEM block"):
        GostPrivateKey.from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(GostError, match="trailing bytes"):
        GostPublicKey.from_der(key.public_key().der() + b"\x00")
    with pytest.raises(GostError, match="32 bytes"):
        key.sign_digest(b"short")


def test_rsa_certificate_is_not_a_gost_key() -> None:
    rsa_cert = _xmlsec_certificates()[0]  # the vector's RSA root CA
    with pytest.raises(GostError, match="not a GOST"):
        GostPublicKey.from_certificate(rsa_cert)


def test_missing_engine_is_reported_with_the_package_to_install() -> None:
    # OPENSSL_ENGINES points OpenSSL's engine search at an empty directory.
    probe = (
        "from gateway.crypto import gost; print(gost.available()); print(gost.unavailable_reason())"
    )
    env = {**os.environ, "OPENSSL_ENGINES": "/nonexistent"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("False\n")
    assert "libengine-gost-openssl" in out


def test_one_key_shared_by_threads() -> None:
    key = gost.generate_key()
    public = key.public_key()
    results: list[bool] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(50):
            data = f"thread {n} message {i}".encode()
            ok = public.verify(data, key.sign(data))
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 200


# --- libxmlsec1's published test vector --------------------------------------------------


def _xmlsec_certificates() -> list[bytes]:
    doc = etree.parse(str(XMLSEC_VECTOR))
    return [base64.b64decode(node.text or "") for node in doc.iter(f"{{{DS}}}X509Certificate")]


def _inclusive_c14n(element: etree._Element) -> bytes:
    """Inclusive C14N 1.0 of a subtree. lxml's own (libxml2 2.14) writes a spurious
    xmlns="" on descendants when an ancestor declares another default namespace, so
    the subtree is serialized with its in-scope namespaces and reparsed first."""
    return etree.tostring(etree.fromstring(etree.tostring(element)), method="c14n")


def test_xmlsec_gost2012_256_vector_verifies() -> None:
    doc = etree.parse(str(XMLSEC_VECTOR))
    signature = doc.getroot().find(f"{{{DS}}}Signature")
    assert signature is not None
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    assert signed_info is not None
    method = signed_info.find(f"{{{DS}}}SignatureMethod")
    digest_method = signed_info.find(f".//{{{DS}}}DigestMethod")
    assert method is not None
    assert method.get("Algorithm") == gost.GOST2012_256_SIGNATURE
    assert digest_method is not None
    assert digest_method.get("Algorithm") == gost.GOST2012_256_DIGEST

    # Reference URI="" with the enveloped-signature transform: the whole document
    # without the Signature element (its tail whitespace stays), inclusive c14n.
    stripped = copy.deepcopy(doc)
    sig_copy = stripped.getroot().find(f"{{{DS}}}Signature")
    assert sig_copy is not None
    previous = sig_copy.getprevious()
    assert previous is not None
    previous.tail = (previous.tail or "") + (sig_copy.tail or "")
    stripped.getroot().remove(sig_copy)
    digest_value = base64.b64decode(signed_info.findtext(f".//{{{DS}}}DigestValue") or "")
    assert gost.streebog256(etree.tostring(stripped, method="c14n")) == digest_value

    value = base64.b64decode(signature.findtext(f"{{{DS}}}SignatureValue") or "")
    leaf = _xmlsec_certificates()[-1]  # root CA, second-level CA, then the GOST key
    canonical = _inclusive_c14n(signed_info)
    assert gost.verify(leaf, canonical, value)
    assert not gost.verify(leaf, canonical.replace(b"TA0onch", b"TA0ONCH"), value)
    # The same signature checked by gostcrypto, after the documented conversions.
    assert _gostcrypto_signer(Curve.CRYPTOPRO_A).verify(
        _gostcrypto_public(GostPublicKey.from_certificate(leaf)),
        gost.streebog256(canonical)[::-1],
        value[32:] + value[:32],
    )


# --- dev PKI ------------------------------------------------------------------------------


def _dev_pki() -> tuple[GostPrivateKey, bytes, GostPrivateKey, bytes, bytes]:
    ca_key = gost.generate_key()
    ca = pki.self_signed_ca(
        ca_key,
        "smevbus dev root CA",
        serial=1,
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(days=3650),
    )
    leaf_key = gost.generate_key(Curve.TC26_A)
    leaf = pki.issue_certificate(
        ca_key,
        ca,
        leaf_key.public_key(),
        "ZAGS",
        organization="Управление ЗАГС",
        serial=2**150 + 7,
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(days=730),
    )
    crl = pki.make_crl(
        ca_key,
        ca,
        revoked={0xBAD: NOW - timedelta(days=1)},
        last_update=NOW - timedelta(hours=1),
        next_update=NOW + timedelta(days=30),
    )
    return ca_key, ca, leaf_key, leaf, crl


def test_dev_pki_chain_and_crl_verify() -> None:
    _, ca, leaf_key, leaf, crl = _dev_pki()
    assert gost.verify_certificate_signature(ca, ca)
    assert gost.verify_certificate_signature(leaf, ca)
    assert not gost.verify_certificate_signature(ca, leaf)
    assert gost.verify_crl_signature(crl, ca)
    assert not gost.verify_crl_signature(crl, leaf)
    data = b"<SenderProvidedRequestData/>"
    assert gost.verify(leaf, data, leaf_key.sign(data))
    # A CA with the same name but another key does not verify the leaf or the CRL.
    _, rogue, *_ = _dev_pki()
    assert not gost.verify_certificate_signature(leaf, rogue)
    assert not gost.verify_crl_signature(crl, rogue)
    # Tampering with the signed part of the certificate breaks its signature.
    der = x509.load_pem_x509_certificate(leaf).public_bytes(Encoding.DER)
    tampered = der.replace(b"ZAGS", b"ZAGZ")
    assert tampered != der
    assert not gost.verify_certificate_signature(tampered, ca)


def test_dev_pki_parses_in_cryptography() -> None:
    _, ca_pem, _, leaf_pem, crl_pem = _dev_pki()
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ZAGS"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "Управление ЗАГС"
    )
    assert leaf.issuer == ca.subject == ca.issuer
    assert leaf.serial_number == 2**150 + 7
    assert leaf.not_valid_before_utc == NOW - timedelta(hours=1)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=730)
    assert leaf.signature_algorithm_oid.dotted_string == "1.2.643.7.1.1.3.2"
    assert leaf.public_key_algorithm_oid.dotted_string == "1.2.643.7.1.1.1.1"
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_bc.ca
    assert ca_bc.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.issuer == ca.subject
    assert [r.serial_number for r in crl] == [0xBAD]
    assert crl.last_update_utc == NOW - timedelta(hours=1)
    assert crl.next_update_utc == NOW + timedelta(days=30)
    # cryptography reads the structure but cannot use a GOST key: that is what the
    # backend's chain functions are for.
    with pytest.raises(UnsupportedAlgorithm, match=r"1\.2\.643\.7\.1\.1\.1\.1"):
        leaf.public_key()
