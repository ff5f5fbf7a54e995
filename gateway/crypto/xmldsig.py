"""XMLDSig signing and verification on top of xmlsec (libxmlsec1).

Both profiles produce the same shape of signature, placed in a container next to
the signed element and pointing at it by ``Id``::

    <ds:Signature>
      <ds:SignedInfo>  exc-c14n, rsa-sha256 | ecdsa-sha256,
        one <ds:Reference URI="#Id">, transforms per profile, sha256 digest
      <ds:SignatureValue>
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>

``EXC_C14N`` is done entirely by xmlsec (template, ``SignatureContext.sign`` and
``verify``). xmlsec cannot run the SMEV transform, so for ``SMEV`` the Reference
digest is computed here (SMEV transform of the element, SHA-256) and only the
SignedInfo signature is left to xmlsec (``sign_binary`` / ``verify_binary`` over
SignedInfo's exclusive c14n). xmlsec's ECDSA transforms already read and write the
raw ``r||s`` form that XMLDSig requires, so no DER conversion is needed.

Verification first checks the signature's structure against a strict allow-list
(one Reference to ``#`` + the target's Id, known transforms and algorithms only, a
certificate in KeyInfo) and that the Id occurs exactly once in the document; then the
certificate against the trust store; then the cryptography, the signature over
SignedInfo before the digest of the signed element: the digest is the one step whose
cost grows with the document, so a forged or untrusted signature is refused without it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
from dataclasses import dataclass

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from xmlsec import constants as _xc

from gateway.core.errors import InternalError, SignatureInvalid
from gateway.crypto.certificates import describe
from gateway.crypto.signer import (
    DS_NS,
    ECDSA_SHA256,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
    SMEV_TRANSFORM,
    SignatureProfile,
)
from gateway.crypto.smev_transform import smev_transform
from gateway.crypto.trust import TrustStore

_DS = f"{{{DS_NS}}}"
_SIGNATURE_TRANSFORMS = {
    RSA_SHA256: _xc.TransformRsaSha256,
    ECDSA_SHA256: _xc.TransformEcdsaSha256,
}
_CERT_CACHE_LIMIT = 4096


def _signature_method(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_SHA256
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ECDSA_SHA256
    raise SignatureInvalid(
        f"unsupported signer key {type(key).__name__}; use RSA or EC P-256 ({describe(cert)})"
    )


def reference_digest(target: etree._Element, profile: SignatureProfile) -> bytes:
    """SHA-256 of ``target`` after the profile's Reference transforms."""
    if profile is SignatureProfile.SMEV:
        # Exclusive c14n is not run first: for a parsed tree the SMEV transform of the
        # element gives the same bytes as the SMEV transform of its c14n form.
        data = smev_transform(target)
    else:
        data = etree.tostring(target, method="c14n", exclusive=True)
    return hashlib.sha256(data).digest()


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


def _same_document(a: etree._Element, b: etree._Element) -> bool:
    return a.getroottree().getroot() is b.getroottree().getroot()


class XmlsecSigner:
    """Signs with one private key and certificate, loaded once.

    The ds:Signature skeleton (everything but the Reference URI and the two values)
    is built once with lxml and copied per call. It is not made with
    ``xmlsec.template``: nodes created inside libxmlsec are invisible to lxml's
    ``find`` (their names are not in the document's dictionary).
    """

    def __init__(
        self, key_pem: bytes, cert_pem: bytes, profile: SignatureProfile = SignatureProfile.SMEV
    ) -> None:
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        self._profile = profile
        self._method = _signature_method(self._cert)
        self._transform = _SIGNATURE_TRANSFORMS[self._method]
        try:
            self._key = xmlsec.Key.from_memory(key_pem, _xc.KeyDataFormatPem)
        except xmlsec.Error as exc:
            raise InternalError(f"cannot load signing key: {exc}") from exc
        cert_b64 = base64.b64encode(self._cert.public_bytes(Encoding.DER)).decode()
        self._template = _signature_template(self._method, profile.transforms, cert_b64)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def profile(self) -> SignatureProfile:
        return self._profile

    def sign(self, target: etree._Element, into: etree._Element) -> etree._Element:
        ref_id = target.get("Id")
        if not ref_id:
            raise InternalError(f"element <{etree.QName(target).localname}> to sign has no Id")
        if not _same_document(target, into):
            raise InternalError("the signature container is not in the signed element's document")
        sig = copy.deepcopy(self._template)
        signed_info, value_node = sig[0], sig[1]
        reference = signed_info[2]
        reference.set("URI", "#" + ref_id)
        into.append(sig)
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        try:
            if self._profile is SignatureProfile.EXC_C14N:
                ctx.register_id(target, "Id")
                ctx.sign(sig)
            else:
                digest = reference_digest(target, SignatureProfile.SMEV)
                reference[2].text = base64.b64encode(digest).decode()
                value = ctx.sign_binary(_c14n(signed_info), self._transform)
                value_node.text = base64.b64encode(value).decode()
        except xmlsec.Error as exc:
            into.remove(sig)
            raise InternalError(f"signing failed: {exc}") from exc
        return sig


def _signature_template(method: str, transforms: tuple[str, ...], cert_b64: str) -> etree._Element:
    def add(parent: etree._Element, name: str, algorithm: str | None = None) -> etree._Element:
        node = etree.SubElement(parent, _DS + name)
        if algorithm is not None:
            node.set("Algorithm", algorithm)
        return node

    sig = etree.Element(_DS + "Signature", nsmap={"ds": DS_NS})
    signed_info = add(sig, "SignedInfo")
    add(signed_info, "CanonicalizationMethod", EXC_C14N)
    add(signed_info, "SignatureMethod", method)
    reference = add(signed_info, "Reference")
    transforms_node = add(reference, "Transforms")
    for transform in transforms:
        add(transforms_node, "Transform", transform)
    add(reference, "DigestMethod", SHA256)
    add(reference, "DigestValue")
    add(sig, "SignatureValue")
    add(add(add(sig, "KeyInfo"), "X509Data"), "X509Certificate").text = cert_b64
    return sig


@dataclass(frozen=True)
class _Parsed:
    """What the allow-list check extracted from a ds:Signature."""

    method: str
    profile: SignatureProfile
    digest: bytes
    signature_value: bytes
    #: The X509Certificate's base64 text, whitespace removed (the cache key).
    cert_b64: str
    signed_info: etree._Element


class XmlsecVerifier:
    """Verifies signatures of either profile and checks the signer against a trust store."""

    def __init__(self, trust_store: TrustStore) -> None:
        self._trust = trust_store
        self._certs: dict[str, tuple[x509.Certificate, xmlsec.Key]] = {}

    def verify(self, target: etree._Element, signature: etree._Element) -> x509.Certificate:
        ref_id = target.get("Id")
        if not ref_id:
            raise SignatureInvalid(
                f"signed element <{etree.QName(target).localname}> has no Id attribute"
            )
        if not _same_document(target, signature):
            raise SignatureInvalid("the signature is not in the signed element's document")
        parsed = _parse_signature(signature, ref_id)
        _require_unique_id(target, ref_id)
        cert, key = self._certificate(parsed.cert_b64)
        expected_method = _signature_method(cert)
        if parsed.method != expected_method:
            raise SignatureInvalid(
                f"SignatureMethod is {parsed.method} but the certificate's key needs "
                f"{expected_method} ({describe(cert)})"
            )
        self._trust.check(cert)
        if parsed.profile is SignatureProfile.EXC_C14N:
            self._verify_with_xmlsec(target, signature, parsed, key)
        else:
            self._verify_smev(target, parsed, key)
        return cert

    def _verify_with_xmlsec(
        self,
        target: etree._Element,
        signature: etree._Element,
        parsed: _Parsed,
        key: xmlsec.Key,
    ) -> None:
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        # Defence in depth: xmlsec refuses anything beyond what the allow-list passed.
        ctx.enable_reference_transform(_xc.TransformExclC14N)
        ctx.enable_reference_transform(_xc.TransformSha256)
        ctx.enable_signature_transform(_xc.TransformExclC14N)
        ctx.enable_signature_transform(_SIGNATURE_TRANSFORMS[parsed.method])
        try:
            ctx.register_id(target, "Id")
            ctx.verify(signature)
        except xmlsec.Error as exc:
            # xmlsec does not say which part failed; find out, for a useful message.
            _check_digest(target, parsed)
            raise _bad_signature_value() from exc

    def _verify_smev(self, target: etree._Element, parsed: _Parsed, key: xmlsec.Key) -> None:
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        try:
            ctx.verify_binary(
                _c14n(parsed.signed_info),
                _SIGNATURE_TRANSFORMS[parsed.method],
                parsed.signature_value,
            )
        except xmlsec.Error as exc:
            raise _bad_signature_value() from exc
        _check_digest(target, parsed)

    def _certificate(self, b64: str) -> tuple[x509.Certificate, xmlsec.Key]:
        cached = self._certs.get(b64)
        if cached is not None:
            return cached
        try:
            der = base64.b64decode(b64, validate=True)
            cert = x509.load_der_x509_certificate(der)
            # From the bare public key: a key loaded from the certificate carries the
            # certificate along, and SignatureContext copies it on every use (~100 us).
            public_pem = cert.public_key().public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            )
            key = xmlsec.Key.from_memory(public_pem, _xc.KeyDataFormatPem)
        except (ValueError, binascii.Error, xmlsec.Error) as exc:
            raise SignatureInvalid(
                f"X509Certificate in KeyInfo is not a valid certificate: {exc}"
            ) from exc
        if len(self._certs) >= _CERT_CACHE_LIMIT:
            self._certs.clear()
        self._certs[b64] = (cert, key)
        return cert, key


def _bad_signature_value() -> SignatureInvalid:
    return SignatureInvalid(
        "SignatureValue does not verify with the key of the certificate in KeyInfo: "
        "SignedInfo or SignatureValue was changed, or another key signed it"
    )


def _check_digest(target: etree._Element, parsed: _Parsed) -> None:
    actual = reference_digest(target, parsed.profile)
    if actual != parsed.digest:
        raise SignatureInvalid(
            f"digest of the element with Id={target.get('Id')!r} does not match: the signature "
            f"says {base64.b64encode(parsed.digest).decode()}, the element now gives "
            f"{base64.b64encode(actual).decode()}; it was changed after signing",
            id=target.get("Id"),
        )


# Counted in libxml2: a list of the elements would cost a Python object each. Over the
# attributes, value first: ``//*[@Id=$id or @xml:id=$id]`` compares a node-set on every
# element, ~5 times the cost on a document of 50 000 elements. An element with both
# Id and xml:id equal to the target's counts twice (refused too).
_ELEMENTS_WITH_ID = etree.XPath(
    "count(/descendant-or-self::*/@*[. = $id][(local-name() = 'Id' and namespace-uri() = '')"
    " or (local-name() = 'id' and namespace-uri() = 'http://www.w3.org/XML/1998/namespace')])"
)


def _require_unique_id(target: etree._Element, ref_id: str) -> None:
    """``ref_id`` (the target's own ``Id``) is on no other element of the document."""
    found = _ELEMENTS_WITH_ID(target, id=ref_id)
    assert isinstance(found, float)
    if found != 1:
        raise SignatureInvalid(
            f"Id {ref_id!r} occurs {found:.0f} times in the document, expected exactly once "
            "on the signed element (duplicate Ids allow signature wrapping)",
            id=ref_id,
            occurrences=int(found),
        )


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _expect_children(parent: etree._Element, names: tuple[str, ...]) -> list[etree._Element]:
    children = _elements(parent)
    if [c.tag for c in children] != [_DS + n for n in names]:
        found = [
            f"ds:{etree.QName(c).localname}" if etree.QName(c).namespace == DS_NS else str(c.tag)
            for c in children
        ]
        raise SignatureInvalid(
            f"ds:{etree.QName(parent).localname} must contain exactly "
            f"{', '.join('ds:' + n for n in names)}; found {', '.join(found) or 'nothing'}"
        )
    return children


def _algorithm(element: etree._Element, allowed: tuple[str, ...]) -> str:
    algorithm = element.get("Algorithm", "")
    if algorithm not in allowed:
        raise SignatureInvalid(
            f"{etree.QName(element).localname} algorithm {algorithm!r} is not accepted; "
            f"expected {' or '.join(allowed)}"
        )
    if _elements(element):
        raise SignatureInvalid(f"{etree.QName(element).localname} must not have parameters")
    return algorithm


def _base64(element: etree._Element) -> bytes:
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except binascii.Error as exc:
        raise SignatureInvalid(f"ds:{etree.QName(element).localname} is not base64") from exc


def _parse_signature(signature: etree._Element, ref_id: str) -> _Parsed:
    """Check the signature against the allow-list and pull out what verification needs."""
    if signature.tag != _DS + "Signature":
        raise SignatureInvalid(f"expected a ds:Signature element, found {signature.tag}")
    if not any(c.tag == _DS + "KeyInfo" for c in signature):
        raise SignatureInvalid("ds:Signature has no ds:KeyInfo with the signer's certificate")
    children = _expect_children(signature, ("SignedInfo", "SignatureValue", "KeyInfo"))
    signed_info, value_node, key_info = children

    references = [c for c in _elements(signed_info) if c.tag == _DS + "Reference"]
    if len(references) != 1:
        raise SignatureInvalid(
            f"SignedInfo must hold exactly one Reference; found {len(references)}"
        )
    c14n, method_node, reference = _expect_children(
        signed_info, ("CanonicalizationMethod", "SignatureMethod", "Reference")
    )
    _algorithm(c14n, (EXC_C14N,))
    method = _algorithm(method_node, (RSA_SHA256, ECDSA_SHA256))

    uri = reference.get("URI")
    if uri != "#" + ref_id:
        raise SignatureInvalid(
            f"Reference URI is {uri!r}, expected '#{ref_id}' (the Id of the signed element)",
            uri=uri,
            expected=f"#{ref_id}",
        )
    transforms_node, digest_method, digest_value = _expect_children(
        reference, ("Transforms", "DigestMethod", "DigestValue")
    )
    transforms = tuple(
        _algorithm(t, (EXC_C14N, SMEV_TRANSFORM)) if t.tag == _DS + "Transform" else t.tag
        for t in _elements(transforms_node)
    )
    profile = SignatureProfile.from_transforms(transforms)
    if profile is None:
        raise SignatureInvalid(
            f"Reference transforms {list(transforms)} are not accepted; expected "
            f"[{EXC_C14N}] or [{EXC_C14N}, {SMEV_TRANSFORM}]"
        )
    _algorithm(digest_method, (SHA256,))

    certs = [
        cert
        for data in _elements(key_info)
        if data.tag == _DS + "X509Data"
        for cert in _elements(data)
        if cert.tag == _DS + "X509Certificate"
    ]
    if len(certs) != 1:
        raise SignatureInvalid(
            f"ds:KeyInfo must carry exactly one X509Data/X509Certificate; found {len(certs)}"
        )
    return _Parsed(
        method=method,
        profile=profile,
        digest=_base64(digest_value),
        signature_value=_base64(value_node),
        cert_b64="".join((certs[0].text or "").split()),
        signed_info=signed_info,
    )
