"""Sign/verify round trips, independent verifiers, and every refusal the verifier owes."""

from __future__ import annotations

import base64
import copy
import hashlib
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from gateway.core.clock import FakeClock
from gateway.core.errors import (
    CertificateExpired,
    CertificateUntrusted,
    InternalError,
    SignatureInvalid,
    SmevbusError,
)
from gateway.crypto import devpki
from gateway.crypto.profiles import EXC_C14N, SMEV_TRANSFORM, SignatureProfile
from gateway.crypto.trust import TrustStore
from gateway.crypto.xmldsig import XmlVerifier, reference_bytes
from tests.unit.crypto_fixtures import (
    BUS_NS,
    DS_NS,
    EC,
    RSA,
    START,
    dev_pki,
    reparse,
    request_doc,
    signer_for,
)

DS = f"{{{DS_NS}}}"
PROFILES = list(SignatureProfile)
BOTH = pytest.mark.parametrize("profile", PROFILES)
KEYS = pytest.mark.parametrize("mnemonic", [EC, RSA])


def signed(
    profile: SignatureProfile = SignatureProfile.SMEV, mnemonic: str = EC
) -> tuple[etree._Element, etree._Element, etree._Element]:
    root, target, into = request_doc()
    dev_pki().signer(mnemonic, profile).sign(target, into)
    return reparse(root)


def refused(
    exc_type: type[SmevbusError],
    target: etree._Element,
    sig: etree._Element,
    clock: FakeClock | None = None,
) -> SmevbusError:
    with pytest.raises(exc_type) as info:
        dev_pki().verifier(clock).verify(target, sig)
    assert info.value.code == exc_type.code
    return info.value


# --- round trips ---------------------------------------------------------------------


@KEYS
@BOTH
def test_round_trip(mnemonic: str, profile: SignatureProfile) -> None:
    root, target, into = request_doc()
    signer = dev_pki().signer(mnemonic, profile)
    sig = signer.sign(target, into)
    assert sig.getparent() is into
    transforms = [t.get("Algorithm") for t in sig.iter(DS + "Transform")]
    assert transforms == list(profile.transforms)
    # in place, and as the receiver sees it after the wire
    assert dev_pki().verifier().verify(target, sig) == signer.certificate
    _, target2, sig2 = reparse(root)
    assert dev_pki().verifier().verify(target2, sig2) == signer.certificate


@KEYS
@BOTH
@pytest.mark.parametrize(
    "around",
    [
        "",
        f'xmlns:dsig="{DS_NS}"',
        f'xmlns="{DS_NS}"',
        f'xmlns:ds="{DS_NS}" xml:lang="ru"',
        'xmlns:ds="urn:other"',
        'xmlns="urn:other"',
    ],
)
@pytest.mark.parametrize("ref_id", ["SIGNED_BY_CONSUMER", "a-1.b_2", "x&y", 'q"<\t'])
def test_a_signature_verifies_whatever_is_declared_around_it(
    mnemonic: str, profile: SignatureProfile, around: str, ref_id: str
) -> None:
    """Whatever an enclosing element declares (the signature's namespace under another
    prefix, as the default, or ``ds`` bound elsewhere) and whatever the Id holds, the
    signature verifies where it was made and once re-parsed."""
    root, target, into = request_doc()
    outer = etree.fromstring(f"<outer {around}/>")
    outer.append(root)
    target.set("Id", ref_id)
    signer = dev_pki().signer(mnemonic, profile)
    sig = signer.sign(target, into)
    assert dev_pki().verifier().verify(target, sig) == signer.certificate
    _, target2, sig2 = reparse(outer)
    assert dev_pki().verifier().verify(target2, sig2) == signer.certificate


@KEYS
def test_smev_profile_ignores_prefixes_and_whitespace(mnemonic: str) -> None:
    """What the SMEV transform is for: re-serialization by an intermediary keeps it valid."""
    root, target, sig = signed(SignatureProfile.SMEV, mnemonic)
    person = root.find(f".//{{{BUS_NS}}}MessageID")
    assert person is not None
    person.tail = "\n\n      "  # whitespace-only text moves
    etree.cleanup_namespaces(root)  # drops the unused declaration
    dev_pki().verifier().verify(target, sig)


@BOTH
def test_comments_between_signature_elements_are_not_elements(profile: SignatureProfile) -> None:
    _root, target, sig = signed(profile)
    for parent in (sig, *sig.iter(DS + "KeyInfo")):
        parent.insert(0, etree.Comment("c"))
        parent.append(etree.ProcessingInstruction("pi"))
    dev_pki().verifier().verify(target, sig)
    # Inside SignedInfo they pass the structure checks; c14n keeps them, so the value fails.
    for parent in sig.iter(DS + "SignedInfo", DS + "Reference", DS + "Transforms"):
        parent.insert(0, etree.Comment("c"))
    assert "SignatureValue does not verify" in str(refused(SignatureInvalid, target, sig))


def test_exc_c14n_digest_is_plain_exc_c14n() -> None:
    _root, target, sig = signed(SignatureProfile.EXC_C14N)
    digest = sig.findtext(f".//{DS}DigestValue")
    canonical = reference_bytes(target, SignatureProfile.EXC_C14N)
    assert canonical == etree.tostring(target, method="c14n", exclusive=True)
    assert digest == base64.b64encode(hashlib.sha256(canonical).digest()).decode()


def test_sign_needs_id_and_same_document() -> None:
    _root, target, into = request_doc()
    signer = dev_pki().signer(EC, SignatureProfile.SMEV)
    del target.attrib["Id"]
    with pytest.raises(InternalError):
        signer.sign(target, into)
    _, target2, _ = request_doc()
    with pytest.raises(InternalError):
        signer.sign(target2, into)


# --- independent verifiers -------------------------------------------------------------


@KEYS
def test_exc_c14n_verified_by_signxml(mnemonic: str) -> None:
    signxml = pytest.importorskip("signxml")
    root, _, _ = signed(SignatureProfile.EXC_C14N, mnemonic)
    cert_pem = devpki.cert_path(dev_pki().keys_dir, mnemonic).read_text()
    result = signxml.XMLVerifier().verify(
        etree.tostring(root), x509_cert=cert_pem, id_attribute="Id", expect_references=1
    )
    signed_el = result.signed_xml
    assert etree.QName(signed_el).localname == "SenderProvidedRequestData"


@KEYS
def test_exc_c14n_verified_by_xmlsec1_cli(mnemonic: str, tmp_path: Path) -> None:
    if shutil.which("xmlsec1") is None:
        pytest.skip("xmlsec1 command-line tool not installed (apt-get install xmlsec1)")
    root, _, _ = signed(SignatureProfile.EXC_C14N, mnemonic)
    doc = tmp_path / "signed.xml"
    doc.write_bytes(etree.tostring(root))
    cmd = [
        "xmlsec1",
        "--verify",
        "--trusted-pem",
        str(dev_pki().keys_dir / "ca.cert.pem"),
        "--id-attr:Id",
        f"{BUS_NS}:SenderProvidedRequestData",
        "--verification-gmt-time",
        (START + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S"),
        str(doc),
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    # and the same tool refuses a tampered copy
    mid = root.find(f".//{{{BUS_NS}}}MessageID")
    assert mid is not None
    mid.text = "tampered"
    doc.write_bytes(etree.tostring(root))
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


# --- content and signature tampering ---------------------------------------------------


@BOTH
def test_refuses_changed_text(profile: SignatureProfile) -> None:
    _root, target, sig = signed(profile)
    mid = target.find(f"{{{BUS_NS}}}MessageID")
    assert mid is not None
    mid.text = "00000000-0000-1000-8000-000000000000"
    err = refused(SignatureInvalid, target, sig)
    assert "digest" in err.message
    assert "changed after signing" in err.message


@BOTH
def test_refuses_added_attribute(profile: SignatureProfile) -> None:
    _, target, sig = signed(profile)
    target.set("extra", "1")
    refused(SignatureInvalid, target, sig)


@BOTH
def test_refuses_altered_signature_value(profile: SignatureProfile) -> None:
    _, target, sig = signed(profile)
    node = sig.find(DS + "SignatureValue")
    assert node is not None
    raw = bytearray(base64.b64decode(node.text or ""))
    raw[5] ^= 0x01
    node.text = base64.b64encode(bytes(raw)).decode()
    err = refused(SignatureInvalid, target, sig)
    assert "SignatureValue does not verify" in err.message


@BOTH
def test_refuses_altered_digest_value(profile: SignatureProfile) -> None:
    _, target, sig = signed(profile)
    node = sig.find(f".//{DS}DigestValue")
    assert node is not None
    node.text = base64.b64encode(b"\x00" * 32).decode()
    err = refused(SignatureInvalid, target, sig)
    # The signature over SignedInfo is checked before the digest; the new DigestValue
    # breaks it.
    assert "SignedInfo or SignatureValue was changed" in err.message


def test_refuses_garbage_base64() -> None:
    _, target, sig = signed()
    node = sig.find(DS + "SignatureValue")
    assert node is not None
    node.text = "not base64!"
    refused(SignatureInvalid, target, sig)


# --- reference and wrapping --------------------------------------------------------------


def test_refuses_reference_to_another_id() -> None:
    _, target, sig = signed()
    ref = sig.find(f".//{DS}Reference")
    assert ref is not None
    ref.set("URI", "#SOMETHING_ELSE")
    err = refused(SignatureInvalid, target, sig)
    assert "#SOMETHING_ELSE" in err.message
    assert "#SIGNED_BY_CONSUMER" in err.message


def test_refuses_signature_over_a_different_element() -> None:
    """Signature is over element A, caller asks to verify element B (its own Id)."""
    root, _target, sig = signed()
    other = root.find(f".//{{{BUS_NS}}}MessagePrimaryContent")
    assert other is not None
    other.set("Id", "OTHER")
    refused(SignatureInvalid, other, sig)


@BOTH
def test_refuses_duplicate_id(profile: SignatureProfile) -> None:
    root, target, sig = signed(profile)
    decoy = copy.deepcopy(target)
    header = etree.SubElement(root, "Wrapper")
    header.append(decoy)
    err = refused(SignatureInvalid, target, sig)
    assert "occurs 2 times" in err.message


@pytest.mark.parametrize(
    ("attribute", "counted"),
    [("Id", True), ("{http://www.w3.org/XML/1998/namespace}id", True), ("{urn:x}Id", False)],
)
def test_an_id_elsewhere_counts_as_id_or_xml_id_only(attribute: str, counted: bool) -> None:
    root, target, sig = signed()
    etree.SubElement(root, "Elsewhere").set(attribute, target.get("Id", ""))
    if counted:
        assert "occurs 2 times" in refused(SignatureInvalid, target, sig).message
    else:
        dev_pki().verifier().verify(target, sig)


@BOTH
def test_refuses_wrapping_forged_element_in_place(profile: SignatureProfile) -> None:
    """Signed original moved away, a forged one with the same Id put where the bus reads."""
    root, original, sig = signed(profile)
    forged = copy.deepcopy(original)
    mid = forged.find(f"{{{BUS_NS}}}MessageID")
    assert mid is not None
    mid.text = "forged"
    parent = original.getparent()
    assert parent is not None
    parent.replace(original, forged)
    etree.SubElement(root, "Hidden").append(original)
    refused(SignatureInvalid, forged, sig)


@BOTH
def test_refuses_wrapping_forged_element_with_other_or_no_id(profile: SignatureProfile) -> None:
    root, original, sig = signed(profile)
    forged = copy.deepcopy(original)
    parent = original.getparent()
    assert parent is not None
    parent.replace(original, forged)
    etree.SubElement(root, "Hidden").append(original)
    # the original still verifies where it hides, so the verifier must use `target` itself
    forged.set("Id", "FORGED")
    refused(SignatureInvalid, forged, sig)
    del forged.attrib["Id"]
    refused(SignatureInvalid, forged, sig)


def test_refuses_signature_from_another_document() -> None:
    _, _, sig = signed()
    _, other_target, _ = request_doc()
    refused(SignatureInvalid, other_target, sig)


def test_refuses_two_references() -> None:
    _, target, sig = signed()
    ref = sig.find(f".//{DS}Reference")
    assert ref is not None
    ref.addnext(copy.deepcopy(ref))
    err = refused(SignatureInvalid, target, sig)
    assert "exactly one Reference" in err.message


# --- algorithm allow-list ------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm",
    [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/TR/1999/REC-xslt-19991116",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    ],
)
def test_refuses_unsupported_transform(algorithm: str) -> None:
    _, target, sig = signed()
    transform = next(t for t in sig.iter(DS + "Transform") if t.get("Algorithm") == SMEV_TRANSFORM)
    transform.set("Algorithm", algorithm)
    err = refused(SignatureInvalid, target, sig)
    assert algorithm in err.message


def test_refuses_transform_order_swapped() -> None:
    _, target, sig = signed()
    first, second = sig.iter(DS + "Transform")
    first.set("Algorithm", SMEV_TRANSFORM)
    second.set("Algorithm", EXC_C14N)
    refused(SignatureInvalid, target, sig)


@pytest.mark.parametrize(
    ("xpath", "algorithm"),
    [
        (".//ds:DigestMethod", "http://www.w3.org/2000/09/xmldsig#sha1"),
        (".//ds:SignatureMethod", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
        (".//ds:SignatureMethod", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"),
        (".//ds:SignatureMethod", "http://www.w3.org/2000/09/xmldsig#hmac-sha1"),
        (".//ds:CanonicalizationMethod", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"),
    ],
)
def test_refuses_weak_or_unknown_algorithms(xpath: str, algorithm: str) -> None:
    _, target, sig = signed()
    node = sig.xpath(xpath, namespaces={"ds": DS_NS})
    assert isinstance(node, list)
    node[0].set("Algorithm", algorithm)  # type: ignore[union-attr]
    err = refused(SignatureInvalid, target, sig)
    assert algorithm in err.message


def test_refuses_method_that_does_not_fit_the_key() -> None:
    _, target, sig = signed(mnemonic=RSA)
    method = sig.find(f".//{DS}SignatureMethod")
    assert method is not None
    method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256")
    refused(SignatureInvalid, target, sig)


def test_refuses_missing_key_info() -> None:
    _, target, sig = signed()
    key_info = sig.find(DS + "KeyInfo")
    assert key_info is not None
    sig.remove(key_info)
    err = refused(SignatureInvalid, target, sig)
    assert "KeyInfo" in err.message


def test_refuses_key_info_without_certificate() -> None:
    _, target, sig = signed(SignatureProfile.EXC_C14N)
    cert = sig.find(f".//{DS}X509Certificate")
    assert cert is not None
    parent = cert.getparent()
    assert parent is not None
    parent.remove(cert)
    err = refused(SignatureInvalid, target, sig)
    assert "X509Certificate" in err.message


def test_refuses_bogus_certificate() -> None:
    _, target, sig = signed()
    cert = sig.find(f".//{DS}X509Certificate")
    assert cert is not None
    cert.text = base64.b64encode(b"not a certificate").decode()
    refused(SignatureInvalid, target, sig)


# --- certificates ------------------------------------------------------------------------


def _signed_by(
    issued: devpki.Issued, profile: SignatureProfile = SignatureProfile.SMEV
) -> tuple[etree._Element, etree._Element]:
    root, target, into = request_doc()
    signer_for(issued, profile).sign(target, into)
    _, target2, sig = reparse(root)
    return target2, sig


@BOTH
def test_refuses_untrusted_ca(profile: SignatureProfile) -> None:
    target, sig = _signed_by(devpki.issue_untrusted("ROGUE", FakeClock(START)), profile)
    err = refused(CertificateUntrusted, target, sig)
    assert "signature does not verify with that CA's key" in err.message


def test_refuses_unknown_issuer() -> None:
    rogue_ca = devpki.new_ca(FakeClock(START), name="some other CA")
    target, sig = _signed_by(devpki.issue(rogue_ca, "ROGUE", FakeClock(START)))
    err = refused(CertificateUntrusted, target, sig)
    assert "some other CA" in err.message
    assert "not a trusted CA" in err.message


@BOTH
def test_refuses_expired(profile: SignatureProfile) -> None:
    target, sig = _signed_by(devpki.issue_expired(dev_pki().ca, "OLD", FakeClock(START)), profile)
    err = refused(CertificateExpired, target, sig)
    assert "expired" in err.message


def test_refuses_not_yet_valid() -> None:
    target, sig = _signed_by(devpki.issue_not_yet_valid(dev_pki().ca, "NEW", FakeClock(START)))
    err = refused(CertificateExpired, target, sig)
    assert "not valid before" in err.message


def test_certificate_expires_as_the_clock_moves() -> None:
    _, target, sig = signed()
    clock = FakeClock(START)
    verifier = dev_pki().verifier(clock)
    verifier.verify(target, sig)
    clock.advance(timedelta(days=3 * 365))
    with pytest.raises(CertificateExpired):
        verifier.verify(target, sig)


@BOTH
def test_refuses_revoked(profile: SignatureProfile, tmp_path: Path) -> None:
    clock = FakeClock(START)
    devpki.init_dev_pki(tmp_path, {"GOOD": ""}, clock=clock)
    revoked = devpki.issue_revoked(tmp_path, "BAD", clock)
    clock.advance(timedelta(minutes=5))
    verifier = XmlVerifier(TrustStore.from_dir(tmp_path, clock))
    target, sig = _signed_by(revoked, profile)
    with pytest.raises(CertificateUntrusted) as info:
        verifier.verify(target, sig)
    assert info.value.code == "certificate_untrusted"
    assert f"{revoked.cert.serial_number:x}" in info.value.message
    assert "revoked on" in info.value.message
    # an unrevoked sibling from the same CA still passes
    good = devpki.issue(devpki.load_ca(tmp_path), "GOOD2", clock)
    verifier.verify(*_signed_by(good, profile))
