"""The dev PKI under a GOST CA: the trust store's view, revocation, and the openssl CLI's.

The openssl command with the gost engine (``-engine gost``) is the independent check
of the chain and the CRL; it is skipped when the command or the engine is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gateway.core.clock import FakeClock
from gateway.core.errors import CertificateUntrusted
from gateway.crypto import devpki
from gateway.crypto.trust import TrustStore
from tests.unit.crypto_fixtures import START
from tests.unit.gost_fixtures import needs_gost

pytestmark = needs_gost

PARTICIPANTS = {"ZAGS": "Управление ЗАГС", "MVD": "", "FNS": "Tax"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def keys(tmp_path: Path, clock: FakeClock) -> Path:
    devpki.init_dev_pki(
        tmp_path, PARTICIPANTS, key_type="gost2012-256", key_types={"FNS": "ec"}, clock=clock
    )
    return tmp_path


def cert(keys: Path, mnemonic: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(devpki.cert_path(keys, mnemonic).read_bytes())


def test_certificates_and_validity(keys: Path) -> None:
    ca = devpki.load_ca(keys)
    assert devpki.key_type_of(ca.cert) == "gost2012-256"
    assert ca.cert.not_valid_before_utc == START - devpki.BACKDATE
    assert ca.cert.not_valid_after_utc == START + devpki.CA_LIFETIME
    zags = cert(keys, "ZAGS")
    assert devpki.key_type_of(zags) == "gost2012-256"
    assert devpki.key_type_of(cert(keys, "FNS")) == "ec"
    assert zags.issuer == ca.cert.subject
    assert zags.not_valid_after_utc == START + devpki.CERT_LIFETIME
    assert "O=Управление ЗАГС" in zags.subject.rfc4514_string()
    assert not any(p.name.startswith(devpki.TLS_SERVER) for p in keys.iterdir())
    with pytest.raises(ValueError, match="GOST CA makes no TLS"):
        devpki.issue_tls_server(ca, ["localhost"], FakeClock(START))


def test_trust_store_checks_gost_and_ec_participants(keys: Path, clock: FakeClock) -> None:
    store = TrustStore.from_dir(keys, clock)
    for mnemonic in PARTICIPANTS:
        store.check(cert(keys, mnemonic))


def test_revoke_under_a_gost_ca(keys: Path, clock: FakeClock) -> None:
    revoked = devpki.issue_revoked(keys, "MVD", clock, key_type="gost2012-256")
    crl = x509.load_pem_x509_crl((keys / "crl.pem").read_bytes())
    assert crl.signature_algorithm_oid.dotted_string == "1.2.643.7.1.1.3.2"
    assert crl.get_revoked_certificate_by_serial_number(revoked.cert.serial_number) is not None
    clock.advance(timedelta(seconds=5))
    store = TrustStore.from_dir(keys, clock)
    with pytest.raises(CertificateUntrusted, match="revoked"):
        store.check(revoked.cert)
    store.check(cert(keys, "MVD"))  # the directory's own MVD certificate is not revoked


def test_load_ca_round_trip_issues_more(keys: Path, clock: FakeClock) -> None:
    ca = devpki.load_ca(keys)
    more = devpki.issue(ca, "NEW", clock, key_type="rsa")
    TrustStore.from_dir(keys, clock).check(more.cert)
    assert devpki.key_type_of(more.cert) == "rsa"


def test_openssl_cli_verifies_the_chain_and_the_crl(keys: Path, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    for mnemonic in PARTICIPANTS:
        run = subprocess.run(
            [
                "openssl",
                "verify",
                "-engine",
                "gost",
                "-attime",
                str(int(START.timestamp())),
                "-CAfile",
                str(keys / "ca.cert.pem"),
                "-crl_check",
                "-CRLfile",
                str(keys / "crl.pem"),
                str(devpki.cert_path(keys, mnemonic)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.strip().endswith(": OK"), run.stdout
    rogue = devpki.issue_untrusted("ZAGS", FakeClock(START), key_type="gost2012-256")
    (tmp_path / "rogue.pem").write_bytes(rogue.cert_pem())
    refused = subprocess.run(
        [
            "openssl",
            "verify",
            "-engine",
            "gost",
            "-attime",
            str(int(START.timestamp())),
            "-CAfile",
            str(keys / "ca.cert.pem"),
            str(tmp_path / "rogue.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "verification failed" in refused.stdout + refused.stderr


def test_an_ec_ca_cannot_certify_a_gost_key(tmp_path: Path, clock: FakeClock) -> None:
    devpki.init_dev_pki(tmp_path, {"ZAGS": ""}, clock=clock)
    with pytest.raises(ValueError, match="cannot certify a GOST key for FNS"):
        devpki.init_dev_pki(tmp_path, {"FNS": ""}, key_type="gost2012-256", clock=clock)
    assert not devpki.cert_path(tmp_path, "FNS").exists()


def test_new_participants_follow_the_existing_ca_unless_told(keys: Path, clock: FakeClock) -> None:
    devpki.init_dev_pki(keys, {"LATER": ""}, clock=clock)
    devpki.init_dev_pki(keys, {"LATER_RSA": ""}, key_type="rsa", clock=clock)
    assert devpki.key_type_of(cert(keys, "LATER")) == "gost2012-256"
    assert devpki.key_type_of(cert(keys, "LATER_RSA")) == "rsa"
