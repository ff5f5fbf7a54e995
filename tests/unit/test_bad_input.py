"""Hostile and broken inputs to ``Router.handle``: each one a SOAP Fault with a stable code.

Every case is raw bytes sent to the router. For each the test checks: HTTP status 500
with a SOAP 1.1 ``soap:Client`` Fault carrying a named 1.1 fault, the stable code
expected (after the dot of ``faultcode``), a description that names the problem,
nothing queued anywhere, and a good request afterwards still going through. A
hypothesis test then mutates a valid signed SendRequest at random.
"""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.core.errors import error_class, error_classes
from gateway.testing.bus import START, Bus, birth_request, uuid1_at
from gateway.transport.base import Direction
from gateway.xml.namespaces import SOAP_ENV, qname
from gateway.xml.soap import parse_fault
from tests.bad_input.cases import CASES, Case
from tests.bad_input.world import (
    assert_nothing_leaks,
    good_request,
    replace_once,
    signature_text,
)

KNOWN_CODES = {e.code for e in error_classes()} - {"internal"}


# --- the test --------------------------------------------------------------------------


def _fault_parts(raw: bytes) -> tuple[str, str, str, str]:
    """(faultcode, stable code, origin, description) of a 1.1 named fault: the stable
    code is written after the dot of the faultcode (``soap:Client.schema_violation``)."""
    fault = parse_fault(etree.fromstring(raw))
    assert fault is not None, raw[:300]
    assert fault.element is not None, raw[:300]  # a named 1.1 fault in the detail
    cls = error_class(fault.code or "")
    return (
        fault.faultcode,
        fault.code or "",
        "" if cls is None else str(cls.origin),
        fault.description or "",
    )


def test_corpus_is_large_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)
    assert {c.code for c in CASES} <= KNOWN_CODES


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_with_its_code(bus: Bus, bad: Case) -> None:
    raw = await bad.build(bus)
    before = await bus.depths()

    status, reply = await bus.router.handle(raw)

    assert status == 500
    faultcode, code, origin, description = _fault_parts(reply)
    assert code == bad.code, description
    assert faultcode == "soap:Client"
    assert origin == "client"
    assert description.strip()
    assert bad.fragment.lower() in description.lower(), description
    assert_nothing_leaks(reply.decode("utf-8", errors="replace"))
    assert await bus.depths() == before, "a refused input must queue nothing"

    # The router is unharmed: a good request goes through right after.
    sent = await bus.portal.send_request(birth_request())
    assert sent.status == "requestIsAcceptedBySmev"
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == before["requests.ZAGS"] + 1


# --- random damage ---------------------------------------------------------------------

_position = st.integers(0, 1 << 20)
_mutation = st.one_of(
    # Mostly single-byte damage, which keeps the document well-formed often enough to
    # reach the schema, signature and certificate checks; sometimes worse.
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("delete"), _position, st.integers(1, 16)),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), _position, st.just(0)),
)


def _mutate(raw: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    data = bytearray(raw)
    for kind, where, arg in mutations:
        if not data:
            break
        at = where % len(data)
        if kind == "flip":
            assert isinstance(arg, int)
            data[at] ^= 1 << arg
        elif kind == "set":
            assert isinstance(arg, int)
            data[at] = arg
        elif kind == "delete":
            assert isinstance(arg, int)
            del data[at : at + arg]
        elif kind == "insert":
            assert isinstance(arg, bytes)
            data[at:at] = arg
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutations=st.lists(_mutation, min_size=1, max_size=3))
async def test_random_damage_gives_a_known_fault_or_success(
    bus: Bus, mutations: list[tuple[str, int, object]]
) -> None:
    raw = good_request(bus, message_id=_MUTATED_ID)
    damaged = _mutate(raw, mutations)

    status, reply = await bus.router.handle(damaged)

    root = etree.fromstring(reply)
    fault = root.find(f"{qname(SOAP_ENV, 'Body')}/{qname(SOAP_ENV, 'Fault')}")
    if status == 200:
        assert fault is None
        # Only insignificant bytes were hit: it is the same message, queued once.
        assert await bus.depth(Direction.REQUESTS, "ZAGS") <= 1
        event("accepted")
    else:
        assert status == 500
        assert fault is not None
        _, code, _, description = _fault_parts(reply)
        assert code in KNOWN_CODES, f"{code}: {description} for {damaged!r}"
        event(code)
        assert description.strip()


_MUTATED_ID = uuid1_at(START)


async def test_mutation_baseline_is_accepted(bus: Bus) -> None:
    """The undamaged document the mutations start from is itself accepted."""
    assert (await bus.send(good_request(bus, message_id=_MUTATED_ID))).ok


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(0, 1 << 16), value=st.integers(0, 255))
async def test_damaged_signing_certificate_gives_a_known_fault(
    bus: Bus, position: int, value: int
) -> None:
    """One byte of the DER certificate in KeyInfo replaced: parsed lazily, never ``internal``."""
    raw = good_request(bus, message_id=_MUTATED_ID)
    der = bus.pki.signer("PORTAL").certificate.public_bytes(Encoding.DER)
    at = position % len(der)
    damaged = der[:at] + bytes([value]) + der[at + 1 :]
    cert_b64 = signature_text(raw, "X509Certificate")
    status, reply = await bus.router.handle(replace_once(raw, cert_b64, base64.b64encode(damaged)))
    if status == 200:
        # Only a byte no check covers: e.g. the unused-bits octet of the CA signature's
        # BIT STRING. The certificate must still say and be signed exactly the same.
        original = bus.pki.signer("PORTAL").certificate
        accepted = x509.load_der_x509_certificate(damaged)
        assert accepted.tbs_certificate_bytes == original.tbs_certificate_bytes
        assert accepted.signature == original.signature
        event("accepted")
        return
    assert status == 500
    _, code, _, description = _fault_parts(reply)
    event(code)
    assert code in {"signature_invalid", "certificate_untrusted", "certificate_expired"}, (
        f"{code}: {description}"
    )
