"""Requests kept for their SendResponse (:mod:`gateway.router.sent`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.router.sent import SentRequests
from gateway.store.records import MessageRecord

AT = datetime(2026, 1, 1, tzinfo=UTC)


def request(message_id: str = "1", *, xml: bytes | None = None) -> MessageRecord:
    return MessageRecord(
        message_id=message_id,
        kind=MessageKind.REQUEST,
        sender="PORTAL",
        recipient="ZAGS",
        message_type="urn:t",
        in_reply_to=None,
        content_sha256="0" * 64,
        xml=xml,
        state=MessageState.QUEUED,
        created_at=AT,
        updated_at=AT,
        expires_at=None,
        test_message=False,
        version=2,
    )


def test_a_request_is_kept_without_its_body() -> None:
    sent = SentRequests()
    sent.keep(request(xml=b"<body/>"))
    assert sent.get("1") == request(xml=None)


def test_a_request_without_its_body_is_kept_as_it_came() -> None:
    sent = SentRequests()
    kept = request()
    sent.keep(kept)
    assert sent.get("1") is kept


def test_an_answered_request_or_a_response_is_not_kept() -> None:
    sent = SentRequests()
    sent.keep(request())
    sent.keep(dataclasses.replace(request(), state=MessageState.RESPONDED))
    sent.keep(dataclasses.replace(request("2"), kind=MessageKind.RESPONSE))
    assert len(sent) == 0


def test_the_least_recently_kept_leave_past_the_limit() -> None:
    sent = SentRequests(limit=2)
    for message_id in ("1", "2", "1", "3"):
        sent.keep(request(message_id))
    assert sent.get("2") is None
    assert sent.get("1") is not None
    assert sent.get("3") is not None


def test_a_recipient_awaits_its_requests_until_each_is_answered_or_forgotten() -> None:
    sent = SentRequests(limit=2)
    assert not sent.awaits("ZAGS")
    sent.keep(request("1"))
    sent.keep(request("1"))  # kept again as the journal moved it: still one
    sent.keep(request("2"))
    sent.keep(dataclasses.replace(request("1"), state=MessageState.RESPONDED))
    assert sent.awaits("ZAGS")  # "2" is still to answer
    assert not sent.awaits("PORTAL")
    sent.keep(dataclasses.replace(request("3"), recipient="MVD"))
    sent.keep(dataclasses.replace(request("4"), recipient="MVD"))  # "2" leaves: the limit
    assert not sent.awaits("ZAGS")
    sent.keep(dataclasses.replace(request("3"), recipient="MVD", state=MessageState.RESPONDED))
    assert sent.awaits("MVD")
