"""Logging, configured once per process; context travels in contextvars.

Bind ``message_id``, ``service_request_id``, ``participant`` and ``message_type`` with
:func:`structlog.contextvars.bound_contextvars` and every line logged inside carries
them; the request id (:mod:`gateway.request_id`) is added as ``request_id``. JSON
lines unless stderr is a terminal.

No line may carry a token, key material or message content, in either format
(``console`` or ``json``). Three things see to it:

* :class:`Redactor`, the last processor before the renderer: a value under a
  sensitive key (``authorization``, ``token``, ``secret``, ``password``, ``applicant``,
  ``content``, ``xml``, ``body``, ...; see :data:`SENSITIVE_KEYS`) is masked at any
  depth, and in every string (the event, exception text, nested values) bearer
  tokens, PEM blocks, URL credentials and query strings, ``token=``-style pairs,
  pydantic's ``input_value=`` and the process's own configured secrets are masked.
* Tracebacks are plain text *without local variables* (a frame's locals held the
  bearer token and the applicant's passport number), rendered before the redactor
  sees them.
* The standard library's records (uvicorn, aio-pika, asyncio) go through the same
  pipeline; uvicorn's access line becomes an ``http_request`` event whose ``path``
  has no query string.

Still, pass a logger identifiers and outcomes, never content: the redactor is the
second line of defence, not the first.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway.request_id import add_request_id

MASK: Final = "[redacted]"

#: Keys (lowercase, ``-`` read as ``_``) whose values are never logged.
SENSITIVE_KEYS: Final = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "token",
        "tokens",
        "api_token",
        "api_tokens",
        "access_token",
        "bearer",
        "password",
        "passwd",
        "secret",
        "secrets",
        "callback_secret",
        "key",
        "private_key",
        "key_pem",
        "pem",
        "applicant",
        "content",
        "xml",
        "body",
        "payload",
        "data",
        "result",
        "document",
        "envelope",
    }
)
#: Key endings that make any key sensitive (``portal_token``, ``hmac_secret``).
_SENSITIVE_SUFFIXES: Final = ("_token", "_tokens", "_secret", "_password", "_pem")

_PATTERNS: Final = (
    # PEM blocks (keys, certificates), also cut off ones
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL),
        "[redacted PEM]",
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), rf"\1\2{MASK}"),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@"), rf"\1{MASK}@"),
    # query strings of URLs: a callback URL may carry the portal's token
    (re.compile(r"(?i)\b(https?://[^\s?#\"'<>]*)\?[^\s#\"'<>]*"), rf"\1?{MASK}"),
    (
        re.compile(
            r"(?i)\b((?:api_|access_|auth_)?(?:token|secret|password|passwd|key))=[^&\s\"',;]+"
        ),
        rf"\1={MASK}",
    ),
    # pydantic echoes the value it refused: input_value='...', input_type=str
    (re.compile(r"input_value=.*?, input_type="), f"input_value={MASK}, input_type="),
)
#: What one of :data:`_PATTERNS` at least needs to match (a PEM line, a bearer or basic
#: word, ``://`` with an ``@`` or ``?`` after it, a ``=``): most values (ids, names,
#: message types) have none of it, and one search spares them the six substitutions.
_MAYBE_SECRET: Final = re.compile(r"(?i)-----BEGIN|\b(?:bearer|basic)\s|://\S*[@?]|=")


@functools.lru_cache(maxsize=1024)
def _sensitive(key: object) -> bool:
    name = str(key).lower().replace("-", "_")
    return name in SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


class Redactor:
    """A structlog processor masking what a log line must never carry (module docstring).

    ``secrets`` are literal values to mask wherever they appear (the API tokens and the
    callback secret this process was configured with).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, known))) if known else None

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._value(key, value) for key, value in event_dict.items()}

    def _value(self, key: object, value: Any) -> Any:
        if _sensitive(key) and value is not None:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self._value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(None, v) for v in value]
        if isinstance(value, bytes | bytearray):
            return f"[{len(value)} bytes]"
        return value

    def text(self, text: str) -> str:
        """``text`` with every secret-looking part masked."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        if _MAYBE_SECRET.search(text) is None:
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def _standard_library_record(
    logger: WrappedLogger, method_name: str, event: EventDict
) -> EventDict:
    """Shape a standard-library record as an event: its logger's name, and uvicorn's
    access line as ``http_request`` without the query string (it may carry secrets);
    the record's raw arguments are dropped."""
    record: logging.LogRecord | None = event.get("_record")
    args = event.pop("positional_args", ())
    if record is None:
        return event
    event["logger"] = record.name
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        event.update(
            event="http_request",
            client=client,
            method=method,
            path=str(path).split("?", 1)[0],
            http_version=http_version,
            status=status,
        )
    return event


def configure_logging(
    *,
    fmt: str = "auto",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream`` (stderr) as ``fmt``: ``json``, ``console``, or ``auto`` (console
    when the stream is a terminal, JSON otherwise), from ``level`` up: structlog's events
    and, through the same processors, the standard library's records (WARNING and up,
    uvicorn's INFO too). ``secrets`` are masked wherever they appear. The one logging
    set-up of every process (gateway, adapters, demo)."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Plain text, no locals; rendered here so that the redactor sees it.
        structlog.processors.format_exc_info,
    ]
    redactor = Redactor(secrets)
    structlog.configure(
        processors=[*shared, redactor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        # The process's own stderr, not a test's captured one (closed when the test
        # ends, while structlog keeps the loggers it made).
        logger_factory=structlog.PrintLoggerFactory(stream or sys.__stderr__),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_standard_library_record, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redactor,
                renderer,
            ],
            pass_foreign_args=True,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
