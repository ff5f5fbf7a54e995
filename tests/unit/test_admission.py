"""The pure admission rules, on plain values: no XML, keys or I/O."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.admission import (
    AnsweredRequest,
    TimePolicy,
    admit_request,
    admit_response,
    check_timestamp,
    replay_window_end,
)
from gateway.core.clock import FakeClock, MessageIdSource
from gateway.core.envelope import (
    PrimaryContent,
    RejectionCode,
    RequestRejected,
    SenderProvidedRequestData,
    SenderProvidedResponseData,
)
from gateway.core.errors import (
    AccessDenied,
    InvalidContent,
    SchemaViolation,
    SmevbusError,
    StaleMessageId,
)
from gateway.core.registry import Registry, parse_registry

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
INN = "urn://smevbus/types/fns/inn/1.0"
POLICY = TimePolicy()


@pytest.fixture(scope="module")
def registry() -> Registry:
    path = Path(__file__).parents[2] / "config" / "registry.toml"
    return parse_registry(path.read_text())


def message_id(at: datetime = NOW) -> uuid.UUID:
    return MessageIdSource(FakeClock(at)).new()


def request(**changes: object) -> SenderProvidedRequestData:
    fields: dict[str, object] = {
        "message_id": message_id(),
        "content": PrimaryContent(message_type=BIRTH, root="BirthRecordRequest"),
    }
    fields.update(changes)
    return SenderProvidedRequestData.model_validate(fields)


def test_portal_request_goes_to_zags(registry: Registry) -> None:
    provider = admit_request(request(), registry.get("PORTAL"), registry, NOW, POLICY)
    assert provider.mnemonic == "ZAGS"


@pytest.mark.parametrize(
    ("changes", "sender", "error", "fragment"),
    [
        ({}, "FNS", AccessDenied, "FNS is not allowed to request"),
        ({"message_id": message_id(NOW - timedelta(days=3))}, "PORTAL", StaleMessageId, "window"),
        ({"message_id": message_id(NOW + timedelta(hours=1))}, "PORTAL", StaleMessageId, "clock"),
        ({"eol": NOW - timedelta(seconds=1)}, "PORTAL", InvalidContent, "end of life"),
    ],
    ids=["not-allowed", "stale-id", "id-from-the-future", "eol-passed"],
)
def test_request_refusals(
    registry: Registry,
    changes: dict[str, object],
    sender: str,
    error: type[SmevbusError],
    fragment: str,
) -> None:
    with pytest.raises(error, match=fragment):
        admit_request(request(**changes), registry.get(sender), registry, NOW, POLICY)


def test_a_uuid4_is_not_a_message_id() -> None:
    with pytest.raises(ValueError, match="version 1"):
        request(message_id=uuid.uuid4())


def test_stale_window_is_configurable(registry: Registry) -> None:
    old = request(message_id=message_id(NOW - timedelta(days=3)))
    week = TimePolicy(message_id_window=timedelta(days=7))
    assert admit_request(old, registry.get("PORTAL"), registry, NOW, week).mnemonic == "ZAGS"


ANSWERED = AnsweredRequest("req-1", sender="PORTAL", recipient="ZAGS", message_type=BIRTH)


def response(content_type: str | None = BIRTH) -> SenderProvidedResponseData:
    if content_type is None:
        return SenderProvidedResponseData(
            message_id=message_id(),
            to=message_id(),
            rejections=(RequestRejected(code=RejectionCode.NO_DATA, description="none"),),
        )
    return SenderProvidedResponseData(
        message_id=message_id(),
        to=message_id(),
        content=PrimaryContent(message_type=content_type, root="R"),
    )


def test_provider_answer_goes_back_to_the_consumer(registry: Registry) -> None:
    consumer = admit_response(response(), registry.get("ZAGS"), ANSWERED, registry, NOW, POLICY)
    assert consumer.mnemonic == "PORTAL"
    rejected = admit_response(response(None), registry.get("ZAGS"), ANSWERED, registry, NOW, POLICY)
    assert rejected.mnemonic == "PORTAL"


def test_only_the_recipient_may_answer(registry: Registry) -> None:
    with pytest.raises(AccessDenied, match="MVD_MIGR did not receive request req-1"):
        admit_response(response(), registry.get("MVD_MIGR"), ANSWERED, registry, NOW, POLICY)


def test_answer_must_be_of_the_requested_type(registry: Registry) -> None:
    with pytest.raises(SchemaViolation, match="asked for"):
        admit_response(response(INN), registry.get("ZAGS"), ANSWERED, registry, NOW, POLICY)


def test_response_carries_exactly_one_answer() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SenderProvidedResponseData(message_id=message_id(), to=message_id())


def test_poll_timestamps_have_a_narrow_window() -> None:
    check_timestamp(NOW - timedelta(minutes=4), NOW, POLICY, what="Timestamp")
    with pytest.raises(StaleMessageId, match="Timestamp"):
        check_timestamp(NOW - timedelta(minutes=6), NOW, POLICY, what="Timestamp")


def test_a_poll_is_remembered_for_longer_than_it_is_accepted() -> None:
    stamp = NOW - timedelta(minutes=1)
    end = replay_window_end(stamp, POLICY)
    last_accepted = stamp + POLICY.clock_skew
    check_timestamp(stamp, last_accepted, POLICY, what="Timestamp")
    with pytest.raises(StaleMessageId):
        check_timestamp(stamp, last_accepted + timedelta(microseconds=1), POLICY, what="Timestamp")
    # Kept one clock skew longer, for gateway processes whose clocks run behind.
    assert end == last_accepted + POLICY.clock_skew
