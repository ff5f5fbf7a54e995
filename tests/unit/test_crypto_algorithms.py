"""Key signers per algorithm, and GOST R 34.10-2012 through the one XMLDSig layer.

Independent checks: ``cryptography``'s own DER ECDSA verification for the raw ``r||s``
layout, and for GOST the pure-Python ``gostcrypto`` package on the SignatureValue and
the DigestValue the XMLDSig layer wrote.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import gostcrypto
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.core.clock import FakeClock
from gateway.core.errors import CertificateUntrusted, InternalError, SignatureInvalid
from gateway.crypto import algorithms as alg
from gateway.crypto import devpki, gost, keystore
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.gost import Curve, GostPrivateKey
from gateway.crypto.gost import pki as gost_pki
from gateway.crypto.profiles import DS_NS, SignatureProfile
from gateway.crypto.trust import CA_CERT_FILE, CRL_FILE, TrustStore
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier, reference_bytes
from gateway.xml import messages
from gateway.xml.parse import parse_secure
from gateway.xml.soap import unwrap_envelope, wrap_envelope
from tests.unit.crypto_fixtures import BIZ_NS, BUS_NS, EC, RSA, START, dev_pki, reparse, request_doc
from tests.unit.gost_fixtures import (
    GostcryptoKey,
    gostcrypto_verifies,
    independent_signature,
    needs_gost,
    plain_request_doc,
)

DS = f"{{{DS_NS}}}"
DATA = b"<ds:SignedInfo>canonical bytes</ds:SignedInfo>"


def key_signer(mnemonic: str) -> alg.KeySigner:
    keys = dev_pki().keys_dir
    return alg.load_key_signer(
        devpki.key_path(keys, mnemonic).read_bytes(), devpki.cert_path(keys, mnemonic).read_bytes()
    )


# --- the registry -------------------------------------------------------------------------


def test_registry_pairs_each_signature_method_with_its_digest() -> None:
    assert {uri: a.digest_uri for uri, a in alg.ALGORITHMS.items()} == {
        alg.RSA_SHA256: alg.SHA256,
        alg.ECDSA_SHA256: alg.SHA256,
        alg.GOST2012_256: alg.STREEBOG256,
    }
    sha256 = hashlib.sha256(b"abc").digest()
    assert alg.RSA_SHA256_ALGORITHM.digest(b"abc") == sha256
    assert alg.ECDSA_SHA256_ALGORITHM.digest(b"abc") == sha256
    assert alg.GOST2012_256 == (
        "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
    )
    assert alg.STREEBOG256 == "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256"


@needs_gost
def test_gost_digest_is_streebog256() -> None:
    expected = gostcrypto.gosthash.new("streebog256", data=b"abc").digest()
    assert alg.GOST2012_256_ALGORITHM.digest(b"abc") == expected


@pytest.mark.parametrize(("mnemonic", "uri"), [(EC, alg.ECDSA_SHA256), (RSA, alg.RSA_SHA256)])
def test_key_signer_round_trip(mnemonic: str, uri: str) -> None:
    signer = key_signer(mnemonic)
    assert signer.algorithm == uri
    algorithm = alg.ALGORITHMS[uri]
    assert alg.algorithm_for(signer.certificate) is algorithm
    signature = signer.sign(DATA)
    assert algorithm.verify(DATA, signature, signer.certificate)
    assert not algorithm.verify(DATA + b" ", signature, signer.certificate)
    flipped = bytearray(signature)
    flipped[3] ^= 1
    assert not algorithm.verify(DATA, bytes(flipped), signer.certificate)
    assert not algorithm.verify(DATA, signature[:-1], signer.certificate)
    other = key_signer(EC if mnemonic == RSA else RSA).certificate
    with pytest.raises(SignatureInvalid, match="not an"):
        algorithm.verify(DATA, signature, other)


def test_ecdsa_signature_value_is_raw_r_s() -> None:
    """XMLDSig wants r || s, 32 bytes each for P-256; cryptography speaks DER."""
    signer = key_signer(EC)
    signature = signer.sign(DATA)
    assert len(signature) == 64
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public = signer.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(encode_dss_signature(r, s), DATA, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(encode_dss_signature(s, r), DATA, ec.ECDSA(hashes.SHA256()))


def test_load_key_signer_refuses_a_key_of_another_certificate() -> None:
    keys = dev_pki().keys_dir
    with pytest.raises(InternalError, match="does not belong to its certificate"):
        alg.load_key_signer(
            devpki.key_path(keys, EC).read_bytes(),
            devpki.issue(dev_pki().ca, "OTHER", FakeClock(START)).cert_pem(),
        )
    with pytest.raises(InternalError, match="not an RSA key"):
        alg.load_key_signer(
            devpki.key_path(keys, EC).read_bytes(), devpki.cert_path(keys, RSA).read_bytes()
        )
    with pytest.raises(InternalError, match="cannot load signing key"):
        alg.load_key_signer(b"not a key", devpki.cert_path(keys, EC).read_bytes())


def test_signer_with_an_unregistered_algorithm_is_refused() -> None:
    signer = key_signer(EC)
    with pytest.raises(InternalError, match="not registered"):
        XmlSigner(signer, algorithms={alg.RSA_SHA256: alg.RSA_SHA256_ALGORITHM})


def test_verifier_without_an_algorithm_refuses_its_signatures() -> None:
    root, target, into = request_doc()
    XmlSigner(key_signer(EC)).sign(target, into)
    _, target, sig = reparse(root)
    only_rsa = {alg.RSA_SHA256: alg.RSA_SHA256_ALGORITHM}
    verifier = XmlVerifier(TrustStore.from_dir(dev_pki().keys_dir, FakeClock(START)), only_rsa)
    with pytest.raises(SignatureInvalid, match="ecdsa-sha256' is not accepted"):
        verifier.verify(target, sig)


# --- GOST R 34.10-2012 through the XMLDSig layer ---------------------------------------------


class GostPKI:
    """A GOST CA and participant in a keys directory that also trusts the EC dev CA."""

    def __init__(self, keys_dir: Path) -> None:
        now = START
        self.ca_key = gost.generate_key()
        self.ca = gost_pki.self_signed_ca(
            self.ca_key,
            "smevbus GOST dev CA",
            serial=1,
            not_before=now - timedelta(hours=1),
            not_after=now + timedelta(days=3650),
        )
        self.key, self.cert = self.issue("GOST_AGENCY", serial=2, curve=Curve.TC26_A)
        self.revoked_key, self.revoked_cert = self.issue("GOST_REVOKED", serial=3)
        crl = gost_pki.make_crl(
            self.ca_key,
            self.ca,
            revoked={3: now - timedelta(minutes=1)},
            last_update=now - timedelta(hours=1),
            next_update=now + timedelta(days=30),
        )
        ec_dir = dev_pki().keys_dir
        (keys_dir / CA_CERT_FILE).write_bytes((ec_dir / CA_CERT_FILE).read_bytes() + self.ca)
        (keys_dir / CRL_FILE).write_bytes((ec_dir / CRL_FILE).read_bytes() + crl)
        self.keys_dir = keys_dir

    def issue(
        self, name: str, *, serial: int, curve: Curve = Curve.CRYPTOPRO_A
    ) -> tuple[GostPrivateKey, bytes]:
        key = gost.generate_key(curve)
        cert = gost_pki.issue_certificate(
            self.ca_key,
            self.ca,
            key.public_key(),
            name,
            serial=serial,
            not_before=START - timedelta(hours=1),
            not_after=START + timedelta(days=730),
        )
        return key, cert

    def signer(self, profile: SignatureProfile, revoked: bool = False) -> XmlSigner:
        key, cert = (self.revoked_key, self.revoked_cert) if revoked else (self.key, self.cert)
        return XmlSigner.from_pem(key.pem(), cert, profile)

    def verifier(self) -> XmlVerifier:
        return XmlVerifier(TrustStore.from_dir(self.keys_dir, FakeClock(START)))


@pytest.fixture
def gost_dir(tmp_path: Path) -> GostPKI:
    return GostPKI(tmp_path)


@needs_gost
@pytest.mark.parametrize("profile", list(SignatureProfile))
def test_gost_round_trip_through_xmldsig(gost_dir: GostPKI, profile: SignatureProfile) -> None:
    root, target, into = request_doc()
    signer = gost_dir.signer(profile)
    assert signer.algorithm is alg.GOST2012_256_ALGORITHM
    sig = signer.sign(target, into)
    assert sig.find(f"{DS}SignedInfo/{DS}SignatureMethod").get("Algorithm") == alg.GOST2012_256  # type: ignore[union-attr]
    assert sig.find(f".//{DS}DigestMethod").get("Algorithm") == alg.STREEBOG256  # type: ignore[union-attr]
    transforms = [t.get("Algorithm") for t in sig.iter(DS + "Transform")]
    assert transforms == list(profile.transforms)

    _, target2, sig2 = reparse(root)
    verifier = gost_dir.verifier()
    assert verifier.verify(target2, sig2) == signer.certificate

    # Independently: gostcrypto checks the SignatureValue over SignedInfo's exclusive c14n
    # and the DigestValue over the transformed element.
    signed_info = sig2.find(f"{DS}SignedInfo")
    assert signed_info is not None
    value = base64.b64decode(sig2.findtext(f"{DS}SignatureValue") or "")
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    assert gostcrypto_verifies(gost_dir.cert, canonical, value)
    assert not gostcrypto_verifies(gost_dir.cert, canonical + b" ", value)
    digest = base64.b64decode(sig2.findtext(f".//{DS}DigestValue") or "")
    expected = gostcrypto.gosthash.new("streebog256", data=reference_bytes(target2, profile))
    assert digest == expected.digest()

    # Tampered content and tampered SignatureValue are refused.
    mid = target2.find(f"{{{BUS_NS}}}MessageID")
    assert mid is not None
    mid.text = "tampered"
    with pytest.raises(SignatureInvalid, match="changed after signing"):
        verifier.verify(target2, sig2)
    _, target3, sig3 = reparse(root)
    node = sig3.find(f"{DS}SignatureValue")
    assert node is not None
    node.text = base64.b64encode(value[:-1] + bytes([value[-1] ^ 1])).decode()
    with pytest.raises(SignatureInvalid, match="SignatureValue does not verify"):
        verifier.verify(target3, sig3)


@needs_gost
def test_signature_made_by_gostcrypto_verifies_with_ours(gost_dir: GostPKI) -> None:
    """A whole SMEV-profile ds:Signature made without gateway.crypto (lxml's exc-c14n,
    the smev_transform package, gostcrypto's key and signature) verifies with ours."""
    ca = devpki.Issued(x509.load_pem_x509_certificate(gost_dir.ca), gost_dir.ca_key)
    theirs = GostcryptoKey.issue(
        ca, "GOSTCRYPTO_AGENCY", not_before=START - timedelta(hours=1), private=PRIVATE
    )
    root, target, into = plain_request_doc()
    independent_signature(target, into, theirs)
    verifier = gost_dir.verifier()
    _, target2, sig2 = reparse(root)
    assert common_name(verifier.verify(target2, sig2)) == "GOSTCRYPTO_AGENCY"
    # Our own signer over the same element writes the same DigestValue, and gostcrypto
    # accepts our SignatureValue.
    root3, target3, into3 = plain_request_doc()
    ours = gost_dir.signer(SignatureProfile.SMEV).sign(target3, into3)
    _, _, ours = reparse(root3)
    assert ours.findtext(f".//{DS}DigestValue") == sig2.findtext(f".//{DS}DigestValue")
    signed_info = ours.find(f"{DS}SignedInfo")
    assert signed_info is not None
    assert gostcrypto_verifies(
        gost_dir.cert,
        etree.tostring(signed_info, method="c14n", exclusive=True),
        base64.b64decode(ours.findtext(f"{DS}SignatureValue") or ""),
    )
    # Tampered after signing: refused with the stable code's error.
    person = target2.find(f".//{{{BIZ_NS}}}Person")
    assert person is not None
    person.set("surname", "Петров")
    with pytest.raises(SignatureInvalid, match="changed after signing"):
        verifier.verify(target2, sig2)


#: A gostcrypto private key (the example key d of GOST R 34.10-2012, Appendix A).
PRIVATE = bytes.fromhex("7a929ade789bb9be10ed359dd39a72c11b60961f49397eee1d19ce9891ec3b28")


@needs_gost
def test_one_verifier_for_gost_and_ecdsa_participants(gost_dir: GostPKI) -> None:
    verifier = gost_dir.verifier()
    for signer in (
        gost_dir.signer(SignatureProfile.SMEV),
        dev_pki().signer(EC, SignatureProfile.SMEV),
    ):
        root, target, into = request_doc()
        signer.sign(target, into)
        assert verifier.verify(*reparse(root)[1:]) == signer.certificate


@needs_gost
def test_gost_participant_from_the_keys_directory(gost_dir: GostPKI) -> None:
    """The key store picks GOST from the key files; a bus body signs and verifies."""
    keys = gost_dir.keys_dir
    devpki.key_path(keys, "GOST_AGENCY").write_bytes(gost_dir.key.pem())
    devpki.cert_path(keys, "GOST_AGENCY").write_bytes(gost_dir.cert)
    keystore.clear_cache()
    try:
        signer = keystore.load_signer(keys, "GOST_AGENCY")
        verifier = keystore.load_verifier(keys, FakeClock(START))
    finally:
        keystore.clear_cache()
    assert signer.algorithm is alg.GOST2012_256_ALGORITHM
    body = messages.build_send_request(
        uuid.UUID("db0486d0-3c08-11f0-9a6b-0242ac120002"), etree.fromstring(b"<x xmlns='urn:x'/>")
    )
    sign_element(body, signer)
    received = unwrap_envelope(parse_secure(wrap_envelope(body)))[1]
    assert common_name(verify_element(received, verifier)) == "GOST_AGENCY"


@needs_gost
def test_gost_method_with_sha256_digest_is_refused(gost_dir: GostPKI) -> None:
    root, target, into = request_doc()
    gost_dir.signer(SignatureProfile.SMEV).sign(target, into)
    _, target, sig = reparse(root)
    method = sig.find(f".//{DS}DigestMethod")
    assert method is not None
    method.set("Algorithm", alg.SHA256)
    with pytest.raises(SignatureInvalid, match="is not accepted"):
        gost_dir.verifier().verify(target, sig)


@needs_gost
def test_gost_signature_claimed_as_ecdsa_is_refused(gost_dir: GostPKI) -> None:
    root, target, into = request_doc()
    gost_dir.signer(SignatureProfile.SMEV).sign(target, into)
    _, target, sig = reparse(root)
    for xpath, uri in (
        (f".//{DS}SignatureMethod", alg.ECDSA_SHA256),
        (f".//{DS}DigestMethod", alg.SHA256),
    ):
        node = sig.find(xpath)
        assert node is not None
        node.set("Algorithm", uri)
    with pytest.raises(SignatureInvalid, match="the certificate's key needs"):
        gost_dir.verifier().verify(target, sig)


@needs_gost
def test_revoked_gost_certificate_is_refused(gost_dir: GostPKI) -> None:
    root, target, into = request_doc()
    gost_dir.signer(SignatureProfile.SMEV, revoked=True).sign(target, into)
    with pytest.raises(CertificateUntrusted, match="revoked"):
        gost_dir.verifier().verify(*reparse(root)[1:])


@needs_gost
def test_gost_certificate_from_another_ca_is_refused(gost_dir: GostPKI, tmp_path: Path) -> None:
    (tmp_path / "rogue").mkdir()
    rogue = GostPKI(tmp_path / "rogue")  # a CA with the same name and another key
    root, target, into = request_doc()
    rogue.signer(SignatureProfile.SMEV).sign(target, into)
    with pytest.raises(CertificateUntrusted, match="does not verify with that CA's key"):
        gost_dir.verifier().verify(*reparse(root)[1:])


# --- python-xmlsec as the independent implementation; none of it at run time ----------------


@pytest.mark.parametrize("mnemonic", [EC, RSA])
def test_signature_values_interoperate_with_python_xmlsec(mnemonic: str) -> None:
    """libxmlsec1 reads our SignatureValue (raw r||s for ECDSA) and we read its."""
    xmlsec = pytest.importorskip("xmlsec")
    signer = key_signer(mnemonic)
    transform = {
        alg.RSA_SHA256: xmlsec.constants.TransformRsaSha256,
        alg.ECDSA_SHA256: xmlsec.constants.TransformEcdsaSha256,
    }[signer.algorithm]
    keys = dev_pki().keys_dir
    key = xmlsec.Key.from_memory(
        devpki.key_path(keys, mnemonic).read_bytes(), xmlsec.constants.KeyDataFormatPem
    )
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.verify_binary(DATA, transform, signer.sign(DATA))  # raises when it does not verify
    theirs = xmlsec.SignatureContext()
    theirs.key = key
    value = theirs.sign_binary(DATA, transform)
    algorithm = alg.ALGORITHMS[signer.algorithm]
    assert algorithm.verify(DATA, value, signer.certificate)
    assert not algorithm.verify(DATA + b"!", value, signer.certificate)


def test_runtime_modules_do_not_import_xmlsec() -> None:
    probe = (
        "import sys\n"
        "sys.modules['xmlsec'] = None  # any import of it now fails\n"
        "import gateway.cli, gateway.bus, gateway.api.app, gateway.crypto.keystore\n"
        "import adapters.process, gateway.client.zeep_signing\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
