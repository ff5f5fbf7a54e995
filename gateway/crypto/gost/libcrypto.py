"""The system libcrypto (OpenSSL 3) with the gost engine, bound through ctypes.

Debian's ``libengine-gost-openssl`` ships two modules: ``engines-3/gost.so`` (an
ENGINE: GOST keys, signatures, Streebog, ciphers) and ``ossl-modules/gostprov.so``
(a provider with only digests and ciphers in version 3.0.1: no key management and no
signatures). Signatures need the engine, so the engine is what this module loads.

Loading it is process-wide: the engine becomes OpenSSL's default for the GOST key
types, their ASN.1 (so ``d2i_*`` of GOST keys and certificates work) and the GOST
digests. Other algorithms are untouched, so Python's ``hashlib``/``ssl`` (which share
this libcrypto) and xmlsec behave as before. The ``cryptography`` wheel links its own
OpenSSL and is not affected at all.

Every call that can fail goes through :func:`check_ptr` or :func:`check_ok`, which
raise :class:`GostError` with the text of OpenSSL's (per-thread) error queue. ctypes
releases the GIL for the duration of each foreign call.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_vp = ctypes.c_void_p
_pp = ctypes.POINTER(ctypes.c_void_p)
_int, _long, _uint, _size = ctypes.c_int, ctypes.c_long, ctypes.c_uint, ctypes.c_size_t
_str = ctypes.c_char_p

# ENGINE_METHOD_* from openssl/engine.h
_ENGINE_METHOD_DIGESTS = 0x0008
_ENGINE_METHOD_PKEY_METHS = 0x0200
_ENGINE_METHOD_PKEY_ASN1_METHS = 0x0400

# name: (restype, argtypes)
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "ERR_get_error": (ctypes.c_ulong, []),
    "ERR_error_string_n": (None, [ctypes.c_ulong, _str, _size]),
    "ENGINE_by_id": (_vp, [_str]),
    "ENGINE_init": (_int, [_vp]),
    "ENGINE_set_default": (_int, [_vp, _uint]),
    "ENGINE_free": (_int, [_vp]),
    "OBJ_txt2nid": (_int, [_str]),
    "EVP_get_digestbyname": (_vp, [_str]),
    "EVP_Digest": (_int, [_str, _size, _str, ctypes.POINTER(_uint), _vp, _vp]),
    # keys
    "d2i_PKCS8_PRIV_KEY_INFO": (_vp, [_vp, _pp, _long]),
    "i2d_PKCS8_PRIV_KEY_INFO": (_int, [_vp, _pp]),
    "PKCS8_PRIV_KEY_INFO_free": (None, [_vp]),
    "EVP_PKCS82PKEY": (_vp, [_vp]),
    "EVP_PKEY2PKCS8": (_vp, [_vp]),
    "d2i_PUBKEY": (_vp, [_vp, _pp, _long]),
    "i2d_PUBKEY": (_int, [_vp, _pp]),
    "EVP_PKEY_get_base_id": (_int, [_vp]),
    "EVP_PKEY_free": (None, [_vp]),
    "EVP_PKEY_CTX_new": (_vp, [_vp, _vp]),
    "EVP_PKEY_CTX_new_id": (_vp, [_int, _vp]),
    "EVP_PKEY_CTX_free": (None, [_vp]),
    "EVP_PKEY_CTX_ctrl_str": (_int, [_vp, _str, _str]),
    "EVP_PKEY_keygen_init": (_int, [_vp]),
    "EVP_PKEY_keygen": (_int, [_vp, _pp]),
    "EVP_PKEY_sign_init": (_int, [_vp]),
    "EVP_PKEY_sign": (_int, [_vp, _str, ctypes.POINTER(_size), _str, _size]),
    "EVP_PKEY_verify_init": (_int, [_vp]),
    "EVP_PKEY_verify": (_int, [_vp, _str, _size, _str, _size]),
    # certificates and CRLs
    "d2i_X509": (_vp, [_vp, _pp, _long]),
    "i2d_X509": (_int, [_vp, _pp]),
    "X509_free": (None, [_vp]),
    "X509_get_pubkey": (_vp, [_vp]),
    "X509_verify": (_int, [_vp, _vp]),
    "d2i_X509_CRL": (_vp, [_vp, _pp, _long]),
    "i2d_X509_CRL": (_int, [_vp, _pp]),
    "X509_CRL_free": (None, [_vp]),
    "X509_CRL_verify": (_int, [_vp, _vp]),
    # building certificates and CRLs (pki.py)
    "X509_new": (_vp, []),
    "X509_set_version": (_int, [_vp, _long]),
    "X509_get_serialNumber": (_vp, [_vp]),
    "X509_set_subject_name": (_int, [_vp, _vp]),
    "X509_set_issuer_name": (_int, [_vp, _vp]),
    "X509_get_subject_name": (_vp, [_vp]),
    "X509_set1_notBefore": (_int, [_vp, _vp]),
    "X509_set1_notAfter": (_int, [_vp, _vp]),
    "X509_set_pubkey": (_int, [_vp, _vp]),
    "X509_add_ext": (_int, [_vp, _vp, _int]),
    "X509_sign": (_int, [_vp, _vp, _vp]),
    "X509_NAME_new": (_vp, []),
    "X509_NAME_free": (None, [_vp]),
    "X509_NAME_add_entry_by_txt": (_int, [_vp, _str, _int, _str, _int, _int, _int]),
    "X509V3_set_ctx": (None, [_vp, _vp, _vp, _vp, _vp, _int]),
    "X509V3_EXT_nconf": (_vp, [_vp, _vp, _str, _str]),
    "X509_EXTENSION_free": (None, [_vp]),
    "BN_bin2bn": (_vp, [_str, _int, _vp]),
    "BN_free": (None, [_vp]),
    "BN_to_ASN1_INTEGER": (_vp, [_vp, _vp]),
    "ASN1_INTEGER_free": (None, [_vp]),
    "ASN1_TIME_set": (_vp, [_vp, ctypes.c_int64]),
    "ASN1_TIME_free": (None, [_vp]),
    "X509_CRL_new": (_vp, []),
    "X509_CRL_set_version": (_int, [_vp, _long]),
    "X509_CRL_set_issuer_name": (_int, [_vp, _vp]),
    "X509_CRL_set1_lastUpdate": (_int, [_vp, _vp]),
    "X509_CRL_set1_nextUpdate": (_int, [_vp, _vp]),
    "X509_CRL_add0_revoked": (_int, [_vp, _vp]),
    "X509_CRL_add_ext": (_int, [_vp, _vp, _int]),
    "X509_CRL_sort": (_int, [_vp]),
    "X509_CRL_sign": (_int, [_vp, _vp, _vp]),
    "X509_REVOKED_new": (_vp, []),
    "X509_REVOKED_free": (None, [_vp]),
    "X509_REVOKED_set_serialNumber": (_int, [_vp, _vp]),
    "X509_REVOKED_set_revocationDate": (_int, [_vp, _vp]),
}

LIBCRYPTO_NAME = "libcrypto.so.3"
ENGINE_ID = b"gost"
GOST2012_256_KEY_OID = b"1.2.643.7.1.1.1.1"  # id-tc26-gost3410-12-256


class GostError(Exception):
    """A GOST operation failed: malformed key, certificate or CRL, or an OpenSSL error.

    Callers decide who is at fault (a client's certificate, the bus's own key) and map
    this to the matching :class:`gateway.core.errors.SmevbusError`.
    """


class GostUnavailable(GostError):
    """libcrypto or its gost engine cannot be loaded on this host."""


@dataclass(frozen=True)
class Backend:
    """The loaded library plus the handles every operation needs."""

    lib: Any  # ctypes.CDLL; its functions are typed by _PROTOTYPES at load time
    engine: int
    streebog256: int  # const EVP_MD *
    key_nid: int


_lock = threading.Lock()
_backend: Backend | None = None
_failure: GostUnavailable | None = None


def backend() -> Backend:
    """The process-wide backend, loaded on first use; raises :class:`GostUnavailable`."""
    global _backend, _failure
    if _backend is not None:
        return _backend
    with _lock:
        if _backend is None and _failure is None:
            try:
                _backend = _load()
            except GostUnavailable as exc:
                _failure = exc  # do not retry dlopen on every call
        if _failure is not None:
            raise _failure
        assert _backend is not None
        return _backend


def _load() -> Backend:
    try:
        lib = ctypes.CDLL(LIBCRYPTO_NAME)
    except OSError as exc:
        raise GostUnavailable(f"cannot load {LIBCRYPTO_NAME} (OpenSSL 3): {exc}") from exc
    try:
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    except AttributeError as exc:
        raise GostUnavailable(f"{LIBCRYPTO_NAME} lacks an OpenSSL 3 function: {exc}") from exc
    engine = lib.ENGINE_by_id(ENGINE_ID)
    if not engine:
        raise GostUnavailable(
            "OpenSSL's gost engine is not installed (Debian/Ubuntu package "
            f"libengine-gost-openssl; scripts/bootstrap.sh installs it): {_drain(lib)}"
        )
    flags = _ENGINE_METHOD_DIGESTS | _ENGINE_METHOD_PKEY_METHS | _ENGINE_METHOD_PKEY_ASN1_METHS
    # ENGINE_init takes a functional reference that lives as long as the process;
    # the structural one from ENGINE_by_id is released either way.
    ok = lib.ENGINE_init(engine) == 1 and lib.ENGINE_set_default(engine, flags) == 1
    errors = _drain(lib)
    lib.ENGINE_free(engine)
    if not ok:
        raise GostUnavailable(f"cannot initialise OpenSSL's gost engine: {errors}")
    md = lib.EVP_get_digestbyname(b"md_gost12_256")
    key_nid = lib.OBJ_txt2nid(GOST2012_256_KEY_OID)
    if not md or key_nid <= 0:
        raise GostUnavailable(f"the gost engine provides no Streebog-256: {_drain(lib)}")
    return Backend(lib=lib, engine=engine, streebog256=md, key_nid=key_nid)


def _drain(lib: Any) -> str:
    """Empty this thread's OpenSSL error queue; its messages joined, or a placeholder."""
    messages = []
    buf = ctypes.create_string_buffer(256)
    while code := lib.ERR_get_error():
        lib.ERR_error_string_n(code, buf, len(buf))
        messages.append(buf.value.decode(errors="replace"))
    return "; ".join(messages) or "no OpenSSL error detail"


def clear_errors(b: Backend) -> None:
    """Forget errors a failed check left behind (a refused signature is not a fault)."""
    _drain(b.lib)


def check_ptr(b: Backend, result: int | None, what: str) -> int:
    """``result`` if it is a non-NULL pointer, else raise with OpenSSL's error text."""
    if not result:
        raise GostError(f"{what} failed: {_drain(b.lib)}")
    return result


def check_ok(b: Backend, result: int, what: str) -> None:
    """Raise unless ``result`` is positive (OpenSSL's convention for success)."""
    if result <= 0:
        raise GostError(f"{what} failed: {_drain(b.lib)}")


def from_der(
    b: Backend, d2i: Callable[..., int | None], free: Callable[[int], None], data: bytes, what: str
) -> int:
    """Decode DER with a ``d2i_*`` function; trailing bytes after the object are refused
    (and the object freed with ``free``)."""
    src = ctypes.c_char_p(data)
    start = ctypes.cast(src, ctypes.c_void_p).value or 0
    cursor = ctypes.c_void_p(start)
    obj = d2i(None, ctypes.byref(cursor), len(data))
    if not obj:
        raise GostError(f"cannot decode {what}: {_drain(b.lib)}")
    if (cursor.value or 0) - start != len(data):
        free(obj)
        raise GostError(f"cannot decode {what}: trailing bytes after the DER object")
    return obj


def to_der(b: Backend, i2d: Callable[..., int], obj: int, what: str) -> bytes:
    """Encode with an ``i2d_*`` function (asked first for the size)."""
    size = i2d(obj, None)
    check_ok(b, size, f"encoding {what}")
    buf = ctypes.create_string_buffer(size)
    cursor = ctypes.c_void_p(ctypes.addressof(buf))
    check_ok(b, i2d(obj, ctypes.byref(cursor)), f"encoding {what}")
    return buf.raw


_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def der_of(data: bytes, label: str) -> bytes:
    """DER bytes from DER or from the first PEM block labelled ``label``."""
    if not data.lstrip().startswith(b"-----BEGIN"):
        return data
    for match in _PEM.finditer(data):
        if match.group(1).decode() == label:
            try:
                return base64.b64decode(b"".join(match.group(2).split()), validate=True)
            except binascii.Error as exc:
                raise GostError(f"malformed PEM {label}: {exc}") from exc
    raise GostError(f"no PEM block '-----BEGIN {label}-----' found")


def pem_of(der: bytes, label: str) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )
