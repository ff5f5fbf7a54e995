"""The XMLDSig layer, written once: references, transforms, SignedInfo, KeyInfo.

Both profiles produce the same shape of signature, placed in a container next to
the signed element and pointing at it by ``Id``::

    <ds:Signature>
      <ds:SignedInfo>  exc-c14n, the key's SignatureMethod,
        one <ds:Reference URI="#Id">, transforms per profile, the method's DigestMethod
      <ds:SignatureValue>
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>

Only the key operation is delegated, to a :class:`~gateway.crypto.algorithms.KeySigner`
(signing SignedInfo's exclusive c14n) or a
:class:`~gateway.crypto.algorithms.KeyVerifier`; RSA, ECDSA and GOST share everything
else. The Reference digest is the algorithm's digest (SHA-256, or Streebog-256 for
GOST) of the signed element after the profile's transforms: exclusive c14n, or the
SMEV transform (:mod:`gateway.crypto.smev_transform`).

Verification first checks the signature's structure against a strict allow-list
(one Reference to ``#`` + the target's Id, known transforms and algorithms only, the
DigestMethod that goes with the SignatureMethod, a certificate in KeyInfo) and that
the Id occurs exactly once in the document; then the certificate against the trust
store; then the cryptography, the signature over SignedInfo before the digest of the
signed element: the digest is the one step whose cost grows with the document, so a
forged or untrusted signature is refused without it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.core.errors import InternalError, SignatureInvalid
from gateway.crypto.algorithms import (
    ALGORITHMS,
    KeySigner,
    KeyVerifier,
    SignatureAlgorithm,
    algorithm_for,
    load_key_signer,
)
from gateway.crypto.certificates import describe, why_unreadable
from gateway.crypto.profiles import DS_NS, EXC_C14N, SMEV_TRANSFORM, SignatureProfile
from gateway.crypto.smev_transform import smev_transform
from gateway.crypto.trust import TrustStore
from gateway.xml.graft import copy_tree

_DS = f"{{{DS_NS}}}"
_CERT_CACHE_LIMIT = 4096


def reference_bytes(target: etree._Element, profile: SignatureProfile) -> bytes:
    """``target`` after the profile's Reference transforms: what the digest covers."""
    if profile is SignatureProfile.SMEV:
        # Exclusive c14n is not run first: for a parsed tree the SMEV transform of the
        # element gives the same bytes as the SMEV transform of its c14n form.
        return smev_transform(target)
    return _c14n(target)


def reference_digest(
    target: etree._Element, profile: SignatureProfile, algorithm: SignatureAlgorithm
) -> bytes:
    """The DigestValue of a Reference to ``target`` signed with ``algorithm``."""
    return algorithm.digest(reference_bytes(target, profile))


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


def _b64(data: bytes) -> str:
    """``base64.b64encode(data).decode()``, without its Python frame."""
    return binascii.b2a_base64(data, newline=False).decode()


def _same_document(a: etree._Element, b: etree._Element) -> bool:
    return a.getroottree().getroot() is b.getroottree().getroot()


class XmlSigner:
    """Signs elements by reference with one :class:`KeySigner`, in one profile.

    The ds:Signature skeleton (everything but the Reference URI and the two values)
    is built once and copied per call.
    """

    def __init__(
        self,
        key: KeySigner,
        profile: SignatureProfile = SignatureProfile.SMEV,
        algorithms: Mapping[str, SignatureAlgorithm] = ALGORITHMS,
    ) -> None:
        algorithm = algorithms.get(key.algorithm)
        if algorithm is None:
            raise InternalError(f"the key signer's algorithm {key.algorithm!r} is not registered")
        self._key = key
        self._algorithm = algorithm
        self._profile = profile
        cert_b64 = base64.b64encode(key.certificate.public_bytes(Encoding.DER)).decode()
        self._template = _signature_template(algorithm, profile.transforms, cert_b64)

    @classmethod
    def from_pem(
        cls, key_pem: bytes, cert_pem: bytes, profile: SignatureProfile = SignatureProfile.SMEV
    ) -> XmlSigner:
        """A signer for a PEM private key and certificate; the algorithm follows the key."""
        return cls(load_key_signer(key_pem, cert_pem), profile)

    @property
    def certificate(self) -> x509.Certificate:
        return self._key.certificate

    @property
    def profile(self) -> SignatureProfile:
        return self._profile

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    def sign(self, target: etree._Element, into: etree._Element) -> etree._Element:
        """Sign ``target`` by reference to its ``Id`` and append the ds:Signature to ``into``.

        ``target`` must carry an ``Id`` attribute; ``into`` is a container elsewhere in
        the same document (e.g. ``CallerInformationSystemSignature``). Returns the
        ds:Signature element.
        """
        ref_id = target.get("Id")
        if not ref_id:
            raise InternalError(f"element <{etree.QName(target).localname}> to sign has no Id")
        if not _same_document(target, into):
            raise InternalError("the signature container is not in the signed element's document")
        digest = reference_digest(target, self._profile, self._algorithm)
        sig = copy_tree(self._template)
        signed_info, value_node = sig[0], sig[1]
        reference = signed_info[2]
        reference.set("URI", "#" + ref_id)
        reference[2].text = _b64(digest)
        into.append(sig)
        try:
            value = self._key.sign(_c14n(signed_info))
        except Exception as exc:  # whatever the key backend (engine, HSM) raises
            into.remove(sig)
            raise InternalError(f"signing failed: {exc}") from exc
        value_node.text = _b64(value)
        return sig


def _signature_template(
    algorithm: SignatureAlgorithm, transforms: tuple[str, ...], cert_b64: str
) -> etree._Element:
    def add(parent: etree._Element, name: str, uri: str | None = None) -> etree._Element:
        node = etree.SubElement(parent, _DS + name)
        if uri is not None:
            node.set("Algorithm", uri)
        return node

    sig = etree.Element(_DS + "Signature", nsmap={"ds": DS_NS})
    signed_info = add(sig, "SignedInfo")
    add(signed_info, "CanonicalizationMethod", EXC_C14N)
    add(signed_info, "SignatureMethod", algorithm.uri)
    reference = add(signed_info, "Reference")
    transforms_node = add(reference, "Transforms")
    for transform in transforms:
        add(transforms_node, "Transform", transform)
    add(reference, "DigestMethod", algorithm.digest_uri)
    add(reference, "DigestValue")
    add(sig, "SignatureValue")
    add(add(add(sig, "KeyInfo"), "X509Data"), "X509Certificate").text = cert_b64
    return sig


@dataclass(frozen=True)
class _Parsed:
    """What the allow-list check extracted from a ds:Signature."""

    algorithm: SignatureAlgorithm
    profile: SignatureProfile
    digest: bytes
    signature_value: bytes
    #: The X509Certificate's base64 text, whitespace removed (the cache key).
    cert_b64: str
    signed_info: etree._Element


@dataclass(frozen=True)
class _Signer:
    """A certificate from KeyInfo, loaded once: its algorithm and public key."""

    cert: x509.Certificate
    algorithm: SignatureAlgorithm
    key: KeyVerifier


class XmlVerifier:
    """Verifies signatures of either profile and checks the signer against a trust store."""

    def __init__(
        self,
        trust_store: TrustStore,
        algorithms: Mapping[str, SignatureAlgorithm] = ALGORITHMS,
    ) -> None:
        self._trust = trust_store
        self._algorithms = algorithms
        self._certs: dict[str, _Signer] = {}

    def verify(self, target: etree._Element, signature: etree._Element) -> x509.Certificate:
        """Check that ``signature`` signs exactly ``target`` and that its signer is trusted.

        Returns the signer's certificate. Raises SignatureInvalid, CertificateUntrusted
        or CertificateExpired. ``target`` is the element the caller will use; the
        signature is never followed to an element it names.
        """
        ref_id = target.get("Id")
        if not ref_id:
            raise SignatureInvalid(
                f"signed element <{etree.QName(target).localname}> has no Id attribute"
            )
        if not _same_document(target, signature):
            raise SignatureInvalid("the signature is not in the signed element's document")
        parsed = _parse_signature(signature, ref_id, self._algorithms)
        _require_unique_id(target, ref_id)
        signer = self._certificate(parsed.cert_b64)
        if parsed.algorithm is not signer.algorithm:
            raise SignatureInvalid(
                f"SignatureMethod is {parsed.algorithm.uri} but the certificate's key needs "
                f"{signer.algorithm.uri} ({describe(signer.cert)})"
            )
        self._trust.check(signer.cert)
        if not signer.key.verify(_c14n(parsed.signed_info), parsed.signature_value):
            raise _bad_signature_value()
        _check_digest(target, parsed)
        return signer.cert

    def _certificate(self, b64: str) -> _Signer:
        cached = self._certs.get(b64)
        if cached is not None:
            return cached
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(b64, validate=True))
            algorithm = algorithm_for(cert, self._algorithms)
            signer = _Signer(cert, algorithm, algorithm.key_verifier(cert))
        except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
            # A damaged certificate may fail lazily, on first use of its parts.
            raise SignatureInvalid(
                f"X509Certificate in KeyInfo is not a usable certificate: {why_unreadable(exc)}"
            ) from exc
        if len(self._certs) >= _CERT_CACHE_LIMIT:
            self._certs.clear()
        self._certs[b64] = signer
        return signer


def _bad_signature_value() -> SignatureInvalid:
    return SignatureInvalid(
        "SignatureValue does not verify with the key of the certificate in KeyInfo: "
        "SignedInfo or SignatureValue was changed, or another key signed it"
    )


def _check_digest(target: etree._Element, parsed: _Parsed) -> None:
    actual = reference_digest(target, parsed.profile, parsed.algorithm)
    if actual != parsed.digest:
        raise SignatureInvalid(
            f"digest of the element with Id={target.get('Id')!r} does not match: the signature "
            f"says {base64.b64encode(parsed.digest).decode()}, the element now gives "
            f"{base64.b64encode(actual).decode()}; it was changed after signing",
            id=target.get("Id"),
        )


# Counted in libxml2: a list of the elements would cost a Python object each. Over the
# attributes: ``//*[@Id=$id or @xml:id=$id]`` compares a node-set on every element, ~5
# times the cost on a document of 50 000 elements; ``@*[. = $id][local-name() = ...]``
# reads every attribute's value, 2.5 times the cost of these two name tests on a bus
# message (1.8 times on 50 000 elements). ``@Id`` is an Id in no namespace; ``xml`` is
# bound in every XPath. An element with both Id and xml:id equal to the target's counts
# twice (refused too).
_ELEMENTS_WITH_ID = etree.XPath(
    "count(/descendant-or-self::*/@Id[. = $id]) + count(/descendant-or-self::*/@xml:id[. = $id])"
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
    # Elements only (no comments, PIs, entities), filtered inside lxml: ~48 times a round trip.
    return list(parent.iterchildren(etree.Element))


#: The Clark tags of the children a ds element must have, by their local names (the
#: three tuples of _parse_signature).
_EXPECTED: dict[tuple[str, ...], list[str]] = {}


def _expect_children(parent: etree._Element, names: tuple[str, ...]) -> list[etree._Element]:
    children = _elements(parent)
    expected = _EXPECTED.get(names)
    if expected is None:
        expected = _EXPECTED[names] = [_DS + n for n in names]
    if [c.tag for c in children] != expected:
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
    for _parameter in element.iterchildren(etree.Element):  # any element child
        raise SignatureInvalid(f"{etree.QName(element).localname} must not have parameters")
    return algorithm


def _base64(element: etree._Element) -> bytes:
    try:
        # base64.b64decode(validate=True) is this, behind two Python calls
        return binascii.a2b_base64("".join((element.text or "").split()), strict_mode=True)
    except binascii.Error as exc:
        raise SignatureInvalid(f"ds:{etree.QName(element).localname} is not base64") from exc


def _parse_signature(
    signature: etree._Element, ref_id: str, algorithms: Mapping[str, SignatureAlgorithm]
) -> _Parsed:
    """Check the signature against the allow-list and pull out what verification needs."""
    if signature.tag != _DS + "Signature":
        raise SignatureInvalid(f"expected a ds:Signature element, found {signature.tag}")
    if _DS + "KeyInfo" not in [c.tag for c in signature]:  # a list: no generator to resume
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
    algorithm = algorithms[_algorithm(method_node, tuple(algorithms))]

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
        [
            _algorithm(t, (EXC_C14N, SMEV_TRANSFORM)) if t.tag == _DS + "Transform" else t.tag
            for t in _elements(transforms_node)
        ]
    )
    profile = SignatureProfile.from_transforms(transforms)
    if profile is None:
        raise SignatureInvalid(
            f"Reference transforms {list(transforms)} are not accepted; expected "
            f"[{EXC_C14N}] or [{EXC_C14N}, {SMEV_TRANSFORM}]"
        )
    # Each SignatureMethod comes with its one DigestMethod (SHA-256; Streebog for GOST).
    _algorithm(digest_method, (algorithm.digest_uri,))

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
        algorithm=algorithm,
        profile=profile,
        digest=_base64(digest_value),
        signature_value=_base64(value_node),
        cert_b64="".join((certs[0].text or "").split()),
        signed_info=signed_info,
    )
