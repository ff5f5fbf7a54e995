"""Development PKI: a root CA, one certificate per participant, and a CRL.

Layout of the keys directory::

    ca.cert.pem  ca.key.pem  crl.pem  <MNEMONIC>.cert.pem  <MNEMONIC>.key.pem
    tls-server.cert.pem  tls-server.key.pem

The participant certificates serve for signing and as TLS client certificates
(``clientAuth``); ``tls-server`` is the gateway's own TLS server certificate, for
:data:`DEFAULT_TLS_HOSTS` and any host named when it was made.

Key types: ``ec`` (P-256), ``rsa`` (2048) and ``gost2012-256`` (GOST R 34.10-2012
256-bit on the CryptoPro A / TC26 paramSetB curve, through OpenSSL's gost engine:
:mod:`gateway.crypto.gost`). The CA's type is chosen once, when it is made; each
participant may have its own. A GOST CA signs with GOST over Streebog-256 and certifies
GOST, EC and RSA keys alike (a mixed registry); an EC or RSA CA cannot certify a GOST
key (``cryptography`` does not know GOST keys). A GOST directory has no ``tls-server``:
Python's TLS has no GOST, and its TLS peers could not check a GOST-signed chain.

Private key files are created with mode 0600. Nothing here is meant for
production keys; it exists so a developer (and the tests) get a working trust
setup with one command, plus the bad certificates the tests need.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.clock import Clock
from gateway.crypto import gost
from gateway.crypto.gost import pki as gost_pki
from gateway.crypto.trust import CA_CERT_FILE, CRL_FILE

KeyType = Literal["ec", "rsa", "gost2012-256"]
#: Every key type, in the order the CLI offers them.
KEY_TYPES: tuple[KeyType, ...] = ("ec", "rsa", "gost2012-256")
GOST: Literal["gost2012-256"] = "gost2012-256"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | gost.GostPrivateKey
#: SubjectPublicKeyInfo algorithm of a GOST R 34.10-2012 256-bit key.
GOST2012_256_KEY_OID = "1.2.643.7.1.1.1.1"

CA_NAME = "smevbus dev root CA"
CA_KEY_FILE = "ca.key.pem"
CA_LIFETIME = timedelta(days=3650)
CERT_LIFETIME = timedelta(days=730)
CRL_LIFETIME = timedelta(days=30)
# Backdate so that a certificate made "now" is valid on a host whose clock lags a bit.
BACKDATE = timedelta(hours=1)
TLS_SERVER = "tls-server"
#: The names a dev gateway's TLS certificate is valid for, besides any given.
DEFAULT_TLS_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        if isinstance(self.key, gost.GostPrivateKey):
            return self.key.pem()
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def cert_path(keys_dir: Path, mnemonic: str) -> Path:
    return keys_dir / f"{mnemonic}.cert.pem"


def key_path(keys_dir: Path, mnemonic: str) -> Path:
    return keys_dir / f"{mnemonic}.key.pem"


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == GOST:
        return gost.generate_key()
    raise ValueError(f"unknown key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")


def key_type_of(cert: x509.Certificate) -> KeyType:
    """The key type of a certificate's subject key (from its algorithm OID)."""
    oid = cert.public_key_algorithm_oid.dotted_string
    if oid == GOST2012_256_KEY_OID:
        return GOST
    if oid.startswith("1.2.643."):
        raise ValueError(f"unsupported GOST key {oid}; the dev PKI knows {GOST} only")
    return "rsa" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ec"


def new_ca(clock: Clock, *, name: str = CA_NAME, key_type: KeyType = "ec") -> Issued:
    key = generate_key(key_type)
    now = clock.now()
    if isinstance(key, gost.GostPrivateKey):
        pem = gost_pki.self_signed_ca(
            key,
            name,
            serial=x509.random_serial_number(),
            not_before=now - BACKDATE,
            not_after=now + CA_LIFETIME,
        )
        return Issued(x509.load_pem_x509_certificate(pem), key)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    mnemonic: str,
    clock: Clock,
    *,
    name: str | None = None,
    key_type: KeyType = "ec",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A participant certificate: CN = mnemonic, O = human name if given."""
    key = generate_key(key_type)
    now = clock.now()
    start = not_before if not_before is not None else now - BACKDATE
    end = not_after if not_after is not None else now + CERT_LIFETIME
    if isinstance(ca.key, gost.GostPrivateKey):
        pem = gost_pki.issue_certificate(
            ca.key,
            ca.cert_pem(),
            _subject_key(key),
            mnemonic,
            organization=name or None,
            serial=x509.random_serial_number(),
            not_before=start,
            not_after=end,
        )
        return Issued(x509.load_pem_x509_certificate(pem), key)
    if isinstance(key, gost.GostPrivateKey):
        raise ValueError(
            f"the {_describe_ca(ca)} cannot certify a GOST key for {mnemonic}; "
            f"make the CA {GOST} (it certifies ec and rsa keys as well)"
        )
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, mnemonic)]
    if name:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def _subject_key(key: PrivateKey) -> gost.GostPublicKey | bytes:
    if isinstance(key, gost.GostPrivateKey):
        return key.public_key()
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _describe_ca(ca: Issued) -> str:
    return f"{key_type_of(ca.cert)} CA {ca.cert.subject.rfc4514_string()!r}"


def issue_tls_server(ca: Issued, hosts: Sequence[str], clock: Clock) -> Issued:
    """A TLS server certificate for the gateway: ``serverAuth``, valid for ``hosts``
    (DNS names or IP addresses, as subject alternative names; the first is the CN)."""
    if not hosts:
        raise ValueError("a TLS server certificate needs at least one host name or address")
    if isinstance(ca.key, gost.GostPrivateKey):
        raise ValueError("a GOST CA makes no TLS certificates (Python's TLS has no GOST)")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_crl(
    ca: Issued,
    clock: Clock,
    revoked: Mapping[int, datetime] | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked`` (serial -> revocation date)."""
    now = clock.now()
    if isinstance(ca.key, gost.GostPrivateKey):
        pem = gost_pki.make_crl(
            ca.key,
            ca.cert_pem(),
            revoked=revoked or {},
            last_update=now - BACKDATE,
            next_update=now + CRL_LIFETIME,
        )
        return x509.load_pem_x509_crl(pem)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + CRL_LIFETIME)
    )
    for serial, when in (revoked or {}).items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


# --- the keys directory ------------------------------------------------------------


def init_dev_pki(
    keys_dir: Path,
    participants: Mapping[str, str],
    *,
    key_type: KeyType | None = None,
    key_types: Mapping[str, KeyType] | None = None,
    tls_hosts: Sequence[str] = (),
    clock: Clock,
) -> list[Path]:
    """Create the dev PKI in ``keys_dir``; never overwrite an existing file.

    ``participants`` maps mnemonic -> human name (may be empty). ``key_type`` is the
    new CA's and every participant's key type (default: the existing CA's, else
    ``ec``), unless ``key_types`` names another for a participant (a mixed registry
    needs a GOST CA: see the module docstring). If ``ca.cert.pem`` already exists the
    CA is reused and only missing certificates are issued: the participants', and
    (under an EC or RSA CA) the gateway's TLS server certificate for
    :data:`DEFAULT_TLS_HOSTS` plus ``tls_hosts``. Returns the paths of every file in
    the layout, existing or new.
    """
    keys_dir.mkdir(parents=True, exist_ok=True)
    if (keys_dir / CA_CERT_FILE).exists():
        ca = load_ca(keys_dir)
        key_type = key_type or key_type_of(ca.cert)
    else:
        key_type = key_type or "ec"
        ca = new_ca(clock, key_type=key_type)
        _write(keys_dir / CA_KEY_FILE, ca.key_pem(), private=True)
        _write(keys_dir / CA_CERT_FILE, ca.cert_pem())
    if not (keys_dir / CRL_FILE).exists():
        _write_crl(keys_dir, make_crl(ca, clock))
    paths = [keys_dir / CA_CERT_FILE, keys_dir / CA_KEY_FILE, keys_dir / CRL_FILE]
    for mnemonic, name in participants.items():
        cpath, kpath = cert_path(keys_dir, mnemonic), key_path(keys_dir, mnemonic)
        if not cpath.exists():
            kind = (key_types or {}).get(mnemonic, key_type)
            write_participant(
                keys_dir, mnemonic, issue(ca, mnemonic, clock, name=name, key_type=kind)
            )
        paths += [cpath, kpath]
    if isinstance(ca.key, gost.GostPrivateKey):
        return paths
    cpath, kpath = cert_path(keys_dir, TLS_SERVER), key_path(keys_dir, TLS_SERVER)
    if not cpath.exists():
        hosts = list(dict.fromkeys([*DEFAULT_TLS_HOSTS, *tls_hosts]))
        write_participant(keys_dir, TLS_SERVER, issue_tls_server(ca, hosts, clock))
    return [*paths, cpath, kpath]


def load_ca(keys_dir: Path) -> Issued:
    cert = x509.load_pem_x509_certificate((keys_dir / CA_CERT_FILE).read_bytes())
    key_pem = (keys_dir / CA_KEY_FILE).read_bytes()
    if key_type_of(cert) == GOST:
        return Issued(cert, gost.GostPrivateKey.from_pem(key_pem))
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported CA key type {type(key).__name__}")
    return Issued(cert, key)


def write_participant(keys_dir: Path, mnemonic: str, issued: Issued) -> None:
    """Write (replacing) ``<MNEMONIC>.cert.pem`` and ``<MNEMONIC>.key.pem``."""
    _write(key_path(keys_dir, mnemonic), issued.key_pem(), private=True, replace=True)
    _write(cert_path(keys_dir, mnemonic), issued.cert_pem(), replace=True)


def revoke(keys_dir: Path, serials: Iterable[int], clock: Clock) -> x509.CertificateRevocationList:
    """Add ``serials`` (revoked now) to the CRL in ``keys_dir`` and re-issue it."""
    ca = load_ca(keys_dir)
    revoked: dict[int, datetime] = {}
    crl_file = keys_dir / CRL_FILE
    if crl_file.exists():
        old = x509.load_pem_x509_crl(crl_file.read_bytes())
        revoked = {r.serial_number: r.revocation_date_utc for r in old}
    for serial in serials:
        revoked.setdefault(serial, clock.now() - timedelta(seconds=1))
    crl = make_crl(ca, clock, revoked)
    _write_crl(keys_dir, crl, replace=True)
    return crl


# --- bad certificates, for tests -------------------------------------------------------


def issue_expired(ca: Issued, mnemonic: str, clock: Clock, *, key_type: KeyType = "ec") -> Issued:
    now = clock.now()
    return issue(
        ca,
        mnemonic,
        clock,
        key_type=key_type,
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1),
    )


def issue_not_yet_valid(
    ca: Issued, mnemonic: str, clock: Clock, *, key_type: KeyType = "ec"
) -> Issued:
    now = clock.now()
    return issue(
        ca,
        mnemonic,
        clock,
        key_type=key_type,
        not_before=now + timedelta(days=1),
        not_after=now + timedelta(days=400),
    )


def issue_untrusted(mnemonic: str, clock: Clock, *, key_type: KeyType = "ec") -> Issued:
    """A certificate from a fresh CA that shares the dev CA's name but not its key."""
    rogue = new_ca(clock, name=CA_NAME, key_type=key_type)
    return issue(rogue, mnemonic, clock, key_type=key_type)


def issue_revoked(
    keys_dir: Path, mnemonic: str, clock: Clock, *, key_type: KeyType = "ec"
) -> Issued:
    """A certificate from the dev CA whose serial is then added to ``crl.pem``."""
    issued = issue(load_ca(keys_dir), mnemonic, clock, key_type=key_type)
    revoke(keys_dir, [issued.cert.serial_number], clock)
    return issued


def _write_crl(
    keys_dir: Path, crl: x509.CertificateRevocationList, *, replace: bool = False
) -> None:
    _write(keys_dir / CRL_FILE, crl.public_bytes(serialization.Encoding.PEM), replace=replace)


def _write(path: Path, data: bytes, *, private: bool = False, replace: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    if private:
        os.chmod(path, 0o600)  # O_CREAT's mode is filtered by umask; be explicit
