"""Dev PKI layout, trust store decisions, certificate helpers and the key store."""

from __future__ import annotations

import hashlib
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.core.clock import FakeClock
from gateway.core.errors import CertificateExpired, CertificateUntrusted, InternalError
from gateway.crypto import devpki, keystore
from gateway.crypto.certificates import common_name, describe, fingerprint
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.trust import TrustStore
from tests.unit.crypto_fixtures import BUS_NS, START, request_doc


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def keys(tmp_path: Path, clock: FakeClock) -> Path:
    devpki.init_dev_pki(tmp_path, {"ZAGS": "Civil registry", "MVD": ""}, clock=clock)
    return tmp_path


def test_layout_and_permissions(keys: Path) -> None:
    names = sorted(p.name for p in keys.iterdir())
    assert names == sorted(
        [
            "ca.cert.pem",
            "ca.key.pem",
            "crl.pem",
            "ZAGS.cert.pem",
            "ZAGS.key.pem",
            "MVD.cert.pem",
            "MVD.key.pem",
            "tls-server.cert.pem",
            "tls-server.key.pem",
        ]
    )
    for key in keys.glob("*.key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((keys / "ZAGS.cert.pem").read_bytes())
    assert common_name(cert) == "ZAGS"
    assert "O=Civil registry" in describe(cert)
    ca = x509.load_pem_x509_certificate((keys / "ca.cert.pem").read_bytes())
    assert common_name(ca) == "smevbus dev root CA"


def test_init_never_overwrites(keys: Path, clock: FakeClock) -> None:
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    paths = devpki.init_dev_pki(keys, {"ZAGS": "", "FNS": "Tax"}, key_type="rsa", clock=clock)
    assert keys / "FNS.cert.pem" in paths
    assert keys / "ZAGS.key.pem" in paths
    for name, data in before.items():
        assert (keys / name).read_bytes() == data
    fns = x509.load_pem_x509_certificate((keys / "FNS.cert.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((keys / "ca.cert.pem").read_bytes())
    fns.verify_directly_issued_by(ca)


def test_the_gateway_tls_certificate_is_for_the_local_host_and_any_host_named(
    tmp_path: Path, clock: FakeClock
) -> None:
    devpki.init_dev_pki(tmp_path, {"ZAGS": ""}, tls_hosts=["gateway", "10.0.0.7"], clock=clock)
    cert = x509.load_pem_x509_certificate((tmp_path / "tls-server.cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "gateway"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
        "10.0.0.7",
    ]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.cert.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    # Participant certificates are TLS client certificates.
    zags = x509.load_pem_x509_certificate((tmp_path / "ZAGS.cert.pem").read_bytes())
    usage = zags.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_fingerprint(keys: Path) -> None:
    cert = x509.load_pem_x509_certificate((keys / "MVD.cert.pem").read_bytes())
    fp = fingerprint(cert)
    assert fp == hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    assert len(fp) == 64
    assert fp == fp.lower()
    assert ":" not in fp


def _cert(keys: Path, mnemonic: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((keys / f"{mnemonic}.cert.pem").read_bytes())


def test_trust_store_accepts_and_refuses(keys: Path, clock: FakeClock) -> None:
    store = TrustStore.from_dir(keys, clock)
    store.check(_cert(keys, "ZAGS"))
    ca = devpki.load_ca(keys)
    with pytest.raises(CertificateExpired) as expired:
        store.check(devpki.issue_expired(ca, "OLD", clock).cert)
    assert expired.value.code == "certificate_expired"
    with pytest.raises(CertificateExpired, match="not valid before"):
        store.check(devpki.issue_not_yet_valid(ca, "NEW", clock).cert)
    with pytest.raises(CertificateUntrusted) as untrusted:
        store.check(devpki.issue_untrusted("ROGUE", clock).cert)
    assert untrusted.value.code == "certificate_untrusted"


def test_revocation_needs_a_fresh_store(keys: Path, clock: FakeClock) -> None:
    cert = _cert(keys, "MVD")
    old_store = TrustStore.from_dir(keys, clock)
    devpki.revoke(keys, [cert.serial_number], clock)
    old_store.check(cert)  # the store read the CRL when it was built
    with pytest.raises(CertificateUntrusted, match=f"serial {cert.serial_number:x} was revoked"):
        TrustStore.from_dir(keys, clock).check(cert)
    TrustStore.from_dir(keys, clock).check(_cert(keys, "ZAGS"))


def test_expired_ca_is_untrusted(keys: Path, clock: FakeClock) -> None:
    store = TrustStore.from_dir(keys, clock)
    clock.advance(timedelta(days=3651))
    with pytest.raises(CertificateUntrusted, match="issuing CA"):
        store.check(_cert(keys, "ZAGS"))


def test_forged_crl_is_refused(keys: Path, clock: FakeClock) -> None:
    rogue = devpki.new_ca(clock)  # same name as the dev CA, other key
    crl = devpki.make_crl(rogue, clock, {1: clock.now()})
    ca = x509.load_pem_x509_certificate((keys / "ca.cert.pem").read_bytes())
    with pytest.raises(InternalError, match="not signed by any trusted CA"):
        TrustStore([ca], [crl], clock)


def test_non_ca_in_trust_store_is_refused(keys: Path, clock: FakeClock) -> None:
    with pytest.raises(InternalError, match="not a CA"):
        TrustStore([_cert(keys, "ZAGS")], [], clock)


def test_missing_trust_store(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(InternalError, match="smevbus keys init"):
        TrustStore.from_dir(tmp_path, clock)


def test_keystore_round_trip_and_cache(keys: Path, clock: FakeClock) -> None:
    keystore.clear_cache()
    signer = keystore.load_signer(keys, "ZAGS", SignatureProfile.SMEV)
    assert keystore.load_signer(keys, "ZAGS", SignatureProfile.SMEV) is signer
    assert keystore.load_signer(keys, "ZAGS", SignatureProfile.EXC_C14N) is not signer
    verifier = keystore.load_verifier(keys, clock)
    assert keystore.load_verifier(keys, clock) is verifier
    root, target, into = request_doc()
    sig = signer.sign(target, into)
    assert common_name(verifier.verify(target, sig)) == "ZAGS"
    assert root.find(f".//{{{BUS_NS}}}CallerInformationSystemSignature") is into
    keystore.clear_cache()


def test_keystore_missing_files(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(InternalError, match="run `smevbus keys init`") as err:
        keystore.load_signer(keys, "NOBODY")
    assert err.value.code == "internal"
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(InternalError, match="smevbus keys init"):
        keystore.load_verifier(empty, FakeClock(START))
