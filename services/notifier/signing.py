"""Signing a notification the way Stripe and Mux do: an HMAC-SHA256 over the timestamp and the body.

`CourseCast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`.
The timestamp is signed with the body, so a receiver that refuses old timestamps (`verify`'s
tolerance) refuses a captured request replayed later. While a secret is being rotated, the header
carries one `v1=` per secret that still signs; a receiver accepts the request if any of them matches.
Pure: no clock but the one passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "CourseCast-Signature"
# The same on every attempt of one notification, to every endpoint: receivers deduplicate on it.
EVENT_ID_HEADER = "CourseCast-Event-Id"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The header value: `t=<timestamp>` then one `v1=` per secret that signs."""
    return ",".join([f"t={timestamp}", *(f"{SCHEME}={signature(s, timestamp, body)}" for s in secrets)])


def verify(
    header: str, body: bytes, secret: str, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within `tolerance_s` of `now`."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
