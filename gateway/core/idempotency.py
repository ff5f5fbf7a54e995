"""What makes two service-request submissions "the same" under one ``Idempotency-Key``.

The digest is SHA-256 (hex) of the canonical JSON of the submitted body: the object
``{service, applicant, callback_url, deadline_s}`` with keys sorted at every level, no
insignificant whitespace and non-ASCII characters escaped; ``deadline_s`` as a float, so
``5`` and ``5.0`` are the same. Two bodies with equal digests are one request; a retry
whose digest differs is another request reusing the key, which the API refuses (422
``idempotency_key_reused``), as the IETF httpapi Idempotency-Key draft says.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_digest(
    *,
    service: str,
    applicant: dict[str, Any],
    callback_url: str | None,
    deadline_s: float | None,
) -> str:
    canonical = json.dumps(
        {
            "service": service,
            "applicant": applicant,
            "callback_url": callback_url,
            "deadline_s": None if deadline_s is None else float(deadline_s),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
