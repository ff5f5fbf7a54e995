"""Signers and verifiers from the keys directory, loaded once per process."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.core.clock import Clock
from gateway.core.errors import InternalError
from gateway.crypto.devpki import cert_path, key_path
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.trust import TrustStore
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier

_lock = threading.Lock()
_signers: dict[tuple[Path, str, SignatureProfile], XmlSigner] = {}
# Keyed by the clock's identity; the clock is kept in the value so the id stays unique.
_verifiers: dict[tuple[Path, int], tuple[Clock, XmlVerifier]] = {}


def load_signer(
    keys_dir: Path, mnemonic: str, profile: SignatureProfile = SignatureProfile.SMEV
) -> XmlSigner:
    """The signer for participant ``mnemonic`` from ``<MNEMONIC>.key.pem`` / ``.cert.pem``;
    the algorithm (RSA, ECDSA, GOST) follows the certificate's key."""
    cache_key = (keys_dir.resolve(), mnemonic, profile)
    with _lock:
        signer = _signers.get(cache_key)
        if signer is None:
            kpath, cpath = key_path(keys_dir, mnemonic), cert_path(keys_dir, mnemonic)
            for path in (kpath, cpath):
                if not path.is_file():
                    raise InternalError(
                        f"no key material for participant {mnemonic!r}: {path} is missing; "
                        "run `smevbus keys init`",
                        path=str(path),
                    )
            signer = XmlSigner.from_pem(kpath.read_bytes(), cpath.read_bytes(), profile)
            _signers[cache_key] = signer
        return signer


def load_verifier(keys_dir: Path, clock: Clock) -> XmlVerifier:
    """A verifier trusting the CA and CRL in ``keys_dir``, judging validity by ``clock``."""
    cache_key = (keys_dir.resolve(), id(clock))
    with _lock:
        cached = _verifiers.get(cache_key)
        if cached is None:
            cached = (clock, XmlVerifier(TrustStore.from_dir(keys_dir, clock)))
            _verifiers[cache_key] = cached
        return cached[1]


def clear_cache() -> None:
    """Forget loaded keys and trust stores (after key rotation or a new CRL)."""
    with _lock:
        _signers.clear()
        _verifiers.clear()
