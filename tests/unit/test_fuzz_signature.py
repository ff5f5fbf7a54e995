"""Fuzz properties of signing and verification over arbitrary business content.

Generated elements, attributes and text go into MessagePrimaryContent of a SendRequest,
which is signed (both profiles), sent as bytes and read back: it verifies. Then any one
byte inside the signed SenderProvidedRequestData is changed: the message is refused with
a stable code, or, only where the change leaves the canonical form the digest covers as
it was, accepted; never another exception.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.core.errors import SmevbusError
from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.smev_transform import smev_transform
from gateway.crypto.xmldsig import XmlVerifier
from gateway.xml import messages as m
from gateway.xml.parse import parse_secure
from gateway.xml.soap import signature_target, unwrap_envelope, wrap_envelope
from tests.unit.crypto_fixtures import EC, dev_pki
from tests.unit.xml_documents import Extras, c14n, fuzz_settings, nodes, spellings

MESSAGE_ID = uuid.UUID("db0486d0-3c08-11f0-9a6b-0242ac120002")
REFUSAL_CODES = {
    "signature_invalid",
    "invalid_content",
    "message_too_large",
    "certificate_untrusted",
    "certificate_expired",
}
PROFILES = [SignatureProfile.EXC_C14N, SignatureProfile.SMEV]


def canonical(target: etree._Element, profile: SignatureProfile) -> bytes:
    """What the Reference digest covers."""
    return smev_transform(target) if profile is SignatureProfile.SMEV else c14n(target)


@st.composite
def signed_messages(draw: st.DrawFn, profile: SignatureProfile) -> bytes:
    node = draw(nodes(max_depth=2))
    content = parse_secure(draw(spellings(node, Extras(whitespace=True))).encode())
    body = m.build_send_request(MESSAGE_ID, content)
    sign_element(body, dev_pki().signer(EC, profile))
    return wrap_envelope(body)


def verify(raw: bytes, verifier: XmlVerifier) -> etree._Element:
    """The verified target of ``raw``; raises SmevbusError when refused."""
    _operation, body = unwrap_envelope(parse_secure(raw))
    verify_element(body, verifier)
    return signature_target(body)


@pytest.mark.parametrize("profile", PROFILES)
@fuzz_settings(40, shrink=False)
@given(data=st.data())
def test_sign_then_verify(profile: SignatureProfile, data: st.DataObject) -> None:
    verify(data.draw(signed_messages(profile)), dev_pki().verifier())


def target_span(raw: bytes) -> tuple[int, int]:
    start = raw.index(b"<smev:SenderProvidedRequestData")
    end_tag = b"</smev:SenderProvidedRequestData>"
    return start, raw.index(end_tag) + len(end_tag)


@pytest.mark.parametrize("profile", PROFILES)
@fuzz_settings(60, shrink=False)
@given(data=st.data())
def test_any_single_byte_change_is_refused_or_harmless(
    profile: SignatureProfile, data: st.DataObject
) -> None:
    raw = data.draw(signed_messages(profile))
    verifier = dev_pki().verifier()
    before = canonical(verify(raw, verifier), profile)
    start, end = target_span(raw)
    at = data.draw(st.integers(start, end - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    changed = raw[:at] + bytes([byte]) + raw[at + 1 :]
    try:
        target = verify(changed, verifier)
    except SmevbusError as exc:
        code = exc.code
    else:
        assert canonical(target, profile) == before, "a change of the signed content verified"
        return
    assert code in REFUSAL_CODES
