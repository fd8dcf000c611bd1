"""Why an attempt stopped, classified (G5): permanent errors fail the job at once, transient ones retry.

Every error carries an `error_type` (a short code for dashboards) and a message written for the
instructor who uploaded the course, never a stack trace. `classify` is pure: it maps any exception
an attempt may raise to one of these, so the runner has exactly one place that decides.
"""

from __future__ import annotations

import socket
from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
)

# S3 error codes that say "try again later" rather than "this will never work".
_TRANSIENT_S3_CODES: Final = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)
_MISSING_S3_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class AttemptError(Exception):
    """An attempt ended without publishing; subclasses say whether another attempt may help."""

    error_type: str = "error"
    retryable: bool = False

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type


class PermanentError(AttemptError):
    """Retrying cannot help: the input is missing, unreadable, unsupported or over a limit."""


class TransientError(AttemptError):
    """The world was briefly unavailable (S3 5xx, throttling, a reset connection): try again later."""

    error_type = "transient"
    retryable = True


class TimeLimitError(AttemptError):
    """The attempt ran past COURSECAST_ENCODE_TIME_LIMIT_S and ffmpeg was stopped (G2)."""

    error_type = "timeout"


class CanceledError(AttemptError):
    """The owner canceled the job while it ran; ffmpeg was stopped."""

    error_type = "canceled"

    def __init__(self, requested_by: str, reason: str | None) -> None:
        super().__init__(f"canceled by {requested_by}")
        self.requested_by = requested_by
        self.reason = reason


class ClaimLostError(AttemptError):
    """Another encoder owns this job's current attempt now: this one must publish nothing (G1)."""

    error_type = "claim_lost"


def missing_input(what: str) -> PermanentError:
    """The staged file an attempt needs is gone."""
    return PermanentError(
        f"The uploaded file {what} could not be found in storage. Please upload the course again.",
        "NoSuchKey",
    )


def unreadable_media(filename: str, detail: str = "") -> PermanentError:
    """ffprobe could not read the file as a video."""
    hint = f" ({detail})" if detail else ""
    return PermanentError(
        f"The file {filename!r} is not a video we can read{hint}. "
        "Please upload an MP4, MOV, MKV or WebM video file.",
        "invalid_media",
    )


def classify(exc: BaseException, what: str = "input") -> AttemptError:
    """The classified form of any exception an attempt raised (G5)."""
    if isinstance(exc, AttemptError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _MISSING_S3_CODES:
            return missing_input(what)
        if code in _TRANSIENT_S3_CODES or (isinstance(status, int) and status >= 500):
            return TransientError(
                f"Storage was temporarily unavailable ({code or status}); the job will be retried.",
                "storage_unavailable",
            )
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return PermanentError(
                "The encoder is not allowed to read or write storage; an administrator must fix its "
                f"credentials ({code}).",
                "storage_access_denied",
            )
        return PermanentError(f"Storage refused a request: {code or status}.", "storage_error")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectionError | socket.timeout):
        return TransientError("Storage could not be reached; the job will be retried.", "storage_unavailable")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"Storage request failed ({type(exc).__name__}); the job will be retried.")
    if isinstance(exc, TimeoutError | OSError):
        return TransientError(f"A system error interrupted the encode ({exc}); the job will be retried.")
    return PermanentError(
        f"The encoder hit an unexpected error ({type(exc).__name__}: {exc}). "
        "The team has been notified by the logs; please try again later.",
        "internal_error",
    )
