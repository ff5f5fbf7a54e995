"""Which ``callback_url`` a portal may name: an absolute http(s) URL, on an allowed host.

The gateway POSTs results to these URLs from inside the bus's network, so the check is
the first half of the guard against server-side request forgery: the operator lists the
portals' callback hosts in ``SMEVBUS_CALLBACK_HOSTS`` (an entry ``*.example.org`` allows
every subdomain of ``example.org``); an empty list allows any name. The second half,
the addresses a name resolves to, is :mod:`gateway.aggregator.callback_guard`'s.
Credentials in the URL are refused: the receiver authenticates the gateway by
``X-Smevbus-Signature``.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from gateway.core.errors import SchemaViolation
from gateway.store.callbacks import MAX_CALLBACK_URL

FIELD = "callback_url"


def check_callback_url(url: str, allowed_hosts: Sequence[str] = ()) -> str:
    """``url`` if the gateway may POST results to it; else :class:`SchemaViolation`.

    The error names ``callback_url`` as the field and says what to change.
    """
    if len(url) > MAX_CALLBACK_URL:
        raise _refused(
            f"callback_url is {len(url)} characters long; at most {MAX_CALLBACK_URL} are allowed"
        )
    shown = url if len(url) <= 100 else url[:100] + "..."
    if url != url.strip() or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise _refused(f"callback_url {shown!r} contains spaces or control characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.host
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refused(f"callback_url {shown!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise _refused(
            f"callback_url must be an absolute http or https URL such as "
            f"https://portal.example.org/smevbus/results, got {shown!r}"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _refused(f"callback_url {shown!r} has no valid port (1..65535)")
    if parsed.userinfo:
        raise _refused(
            "callback_url must not carry a user name or password; the gateway signs "
            "callbacks (X-Smevbus-Signature) for the receiver to authenticate them"
        )
    names = {host, parsed.raw_host.decode("ascii", "replace")}  # an IDN either way
    if allowed_hosts and not any(host_allowed(name, allowed_hosts) for name in names):
        raise _refused(
            f"callback host {host!r} is not among the callback hosts this gateway may call; "
            "ask the bus operator to add it to SMEVBUS_CALLBACK_HOSTS"
        )
    return url


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``host`` is listed (case-insensitive; ``*.d`` = any subdomain of ``d``)."""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        entry = entry.strip().lower().rstrip(".")
        if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def _refused(message: str) -> SchemaViolation:
    return SchemaViolation(message, field=FIELD)
