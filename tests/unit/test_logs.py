"""No log line, console or JSON, carries a token, key material or message content."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway import logs
from gateway.logs import MASK, Redactor, configure_logging

TOKEN = "tok-3f9a1c7e5b2d4a60"
SECRET = "callback-secret-9d8e7f"
PASSPORT = "4509 482913"
SURNAME = "Смирнова"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
FORMATS = ["console", "json"]


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    """uvicorn's loggers as ``smevbus serve`` leaves them (no handlers of their own, the
    access logger at INFO), whatever uvicorn servers of other tests configured."""
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [], True
    loggers[2].setLevel(logging.INFO)
    yield loggers[2]
    for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def configured(fmt: str) -> io.StringIO:
    out = io.StringIO()
    configure_logging(fmt=fmt, secrets=[TOKEN, SECRET], stream=out)
    return out


def assert_clean(text: str) -> None:
    for value in (TOKEN, SECRET, PASSPORT, SURNAME, "BEGIN PRIVATE KEY", "MIIEvQ"):
        assert value not in text, f"{value!r} leaked into:\n{text}"


def failing_submit(authorization: str, applicant: dict[str, str]) -> None:
    passport = applicant["passport"]
    raise ValueError(f"All strings must be XML compatible ({len(passport)} characters)")


@pytest.mark.parametrize("fmt", FORMATS)
def test_secrets_and_content_are_masked_in_events(fmt: str) -> None:
    out = configured(fmt)
    log = structlog.get_logger("test")
    log.info(
        "submitted",
        authorization=f"Bearer {TOKEN}",
        applicant={"passport": PASSPORT, "last_name": SURNAME},
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"},
        callback_url=f"https://portal.example/cb?token={TOKEN}&name={SURNAME}",
        amqp_url="amqp://guest:hunter2@rabbit:5672/",
        detail=f"key material {PEM} and the token {TOKEN} said plainly",
        content=f"<Number>{PASSPORT}</Number>".encode(),
        callback_secret=SECRET,
        service_request_id="1b4e28ba",
    )
    text = out.getvalue()
    assert_clean(text)
    assert "hunter2" not in text
    assert "submitted" in text
    assert "1b4e28ba" in text
    assert "k-1" in text
    assert "https://portal.example/cb?" in text  # where, without what
    if fmt == "json":
        event = json.loads(text)
        assert event["applicant"] == MASK
        assert event["headers"] == {"Authorization": MASK, "Idempotency-Key": "k-1"}
        assert event["amqp_url"] == f"amqp://{MASK}@rabbit:5672/"


@pytest.mark.parametrize("fmt", FORMATS)
def test_tracebacks_have_no_locals(fmt: str) -> None:
    out = configured(fmt)
    log = structlog.get_logger("test")
    try:
        failing_submit(f"Bearer {TOKEN}", {"passport": PASSPORT, "last_name": SURNAME})
    except ValueError:
        log.exception("rest_api_error", path="/api/v1/service-requests")
    text = out.getvalue()
    assert_clean(text)
    assert "Traceback" in text
    assert "failing_submit" in text
    assert "ValueError" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_standard_library_records_go_through_the_same_pipeline(
    fmt: str, access_logger: logging.Logger
) -> None:
    out = configured(fmt)
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:50000",
        "GET",
        f"/api/v1/service-requests?service=x&access_token={TOKEN}",
        "1.1",
        200,
    )
    try:
        failing_submit(TOKEN, {"passport": PASSPORT})
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logging.getLogger("aio_pika").info("quiet below WARNING")
    text = out.getvalue()
    assert_clean(text)
    assert "access_token" not in text
    assert "service=x" not in text
    assert "/api/v1/service-requests" in text
    assert "http_request" in text
    assert "Exception in ASGI application" in text
    assert "quiet below WARNING" not in text
    if fmt == "json":
        access = json.loads(text.splitlines()[0])
        assert access["path"] == "/api/v1/service-requests"
        assert (access["method"], access["status"], access["logger"]) == (
            "GET",
            200,
            "uvicorn.access",
        )


def test_redactor_masks_pydantic_input_values_and_basic_credentials() -> None:
    redact = Redactor()
    text = redact.text(
        f"1 validation error\n  input_value='{PASSPORT}', input_type=str\n"
        "Authorization: Basic dXNlcjpwYXNz; password=hunter2"
    )
    assert PASSPORT not in text
    assert "dXNlcjpwYXNz" not in text
    assert "hunter2" not in text
    assert "input_type=str" in text


@pytest.mark.parametrize(
    "text",
    [
        PEM,
        f"auth failed for Bearer {TOKEN}",
        "BASIC\tdXNlcjpwYXNz",
        "callback to https://portal:pa55@portal.example/cb failed",
        "posted to https://portal.example/cb?token=abc&x=1",
        "amqp://guest:guest@rabbit:5672/",
        "api_key=k-123; Secret=s-456",
        f"input_value='{PASSPORT}', input_type=str",
        "urn://smevbus/types/fns/inn/1.0",
        "8c4d98a6-f03a-11f1-8abd-679170e71b23",
        "a basic fact, a bearer of news",
        "",
    ],
)
def test_the_quick_check_skips_only_what_no_pattern_would_change(text: str) -> None:
    expected = text
    for pattern, replacement in logs._PATTERNS:
        expected = pattern.sub(replacement, expected)
    assert Redactor().text(text) == expected
    if expected != text:  # a value some pattern masks passes the quick check
        assert logs._MAYBE_SECRET.search(text) is not None
