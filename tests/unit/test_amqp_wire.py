"""The AMQP properties a message is published with (:func:`amqp_wire.to_properties`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.transport import amqp_wire
from gateway.transport.base import Message

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def message(expires_at: datetime | None) -> Message:
    return Message(
        message_id="m-1", body=b"<x/>", headers={"request-id": "r"}, expires_at=expires_at
    )


def test_persistent_with_its_id_headers_and_the_time_left_as_ttl_in_ms() -> None:
    eol = NOW + timedelta(seconds=90, microseconds=1500)
    properties = amqp_wire.to_properties(message(eol), NOW)
    assert properties.delivery_mode == 2
    assert properties.message_id == "m-1"
    assert properties.expiration == "90001"
    assert properties.headers == {"request-id": "r", amqp_wire.EXPIRES_AT: eol.isoformat()}


def test_no_ttl_without_an_end_of_life_or_past_the_brokers_limit() -> None:
    assert amqp_wire.to_properties(message(None), NOW).expiration is None
    far = NOW + amqp_wire.MAX_BROKER_TTL + timedelta(seconds=1)
    properties = amqp_wire.to_properties(message(far), NOW)
    assert properties.expiration is None
    assert properties.headers is not None
    assert properties.headers[amqp_wire.EXPIRES_AT] == far.isoformat()


def test_dead_letters_and_retries_keep_the_end_of_life_only_in_the_header() -> None:
    eol = NOW + timedelta(minutes=5)
    properties = amqp_wire.to_properties(
        message(eol), NOW, retries=2, extra={amqp_wire.DEAD_REASON: "rejected"}, broker_expiry=False
    )
    assert properties.expiration is None
    assert properties.headers == {
        "request-id": "r",
        amqp_wire.EXPIRES_AT: eol.isoformat(),
        amqp_wire.RETRIES: 2,
        amqp_wire.DEAD_REASON: "rejected",
    }


def test_a_past_end_of_life_gets_a_zero_ttl() -> None:
    assert amqp_wire.to_properties(message(NOW - timedelta(seconds=1)), NOW).expiration == "0"
