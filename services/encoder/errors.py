"""Why an attempt stopped, classified (G5): permanent errors fail the job at once, transient ones retry.

Every error carries an `error_type` (a short code for dashboards) and a message written for the
instructor who uploaded the course, never a stack trace. `classify` is pure: it maps any exception
an attempt may raise to one of these, so the runner has exactly one place that decides.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterable
from typing import Final

import psycopg
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
)
from confluent_kafka import KafkaException

from services.core.bus import DeliveryFailedError
from services.core.messages import printable
from services.core.storage import MISSING_OBJECT_CODES

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


class AttemptError(Exception):
    """An attempt ended without publishing; subclasses say whether another attempt may help."""

    error_type: str = "error"
    retryable: bool = False

    def __init__(self, message: str, error_type: str | None = None, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # What the tool or library said, paths and all: for the encoder's log, never for the event.
        self.detail = detail
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


class MediaToolKilledError(TransientError):
    """ffmpeg or ffprobe was killed by a signal (SIGKILL from the OOM killer, an operator): the file
    itself is not at fault, so another attempt may well succeed."""

    error_type = "encoder_interrupted"

    def __init__(self, what: str, signal_number: int) -> None:
        super().__init__(
            f"The conversion of the {what} was interrupted (the encoder ran out of memory or was "
            "stopped); the job will be retried."
        )
        self.signal_number = signal_number


class SourceReadError(TransientError):
    """Reading the source from storage failed mid-way (S3 answered an error, the connection broke or
    stalled, past ffmpeg's own retries). Transient as it stands; encode.py asks S3 about the object
    before it reports it, so a source that is gone (404) or forbidden (403) fails the job as
    permanent instead (G5)."""

    error_type = "storage_unavailable"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(
            f"Reading the {what} from storage failed ({without_paths(reason)}); the job will be retried.",
            detail=reason,
        )
        self.reason = reason


def ffmpeg_killed(what: str, returncode: int) -> MediaToolKilledError:
    """ffmpeg ended with a negative return code: killed by signal -returncode, not by its input."""
    return MediaToolKilledError(what, -returncode)


# An absolute path (the encoder's /tmp work folder, a mount point) as tools print it, with the colon
# ffmpeg puts after it. Messages are for the instructor: paths on a worker mean nothing to them.
_PATH: Final = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)*[^\s/:'\"]+:?\s*")


def without_paths(text: str) -> str:
    """`text` with every absolute path removed (pure): a tool's stderr line made fit for a person."""
    return re.sub(r"\s{2,}", " ", _PATH.sub("", text)).strip()


def for_people(message: str, internal_names: Iterable[str] = ()) -> str:
    """`message` as a job's owner may see it (pure): no worker paths, host or process names, and no
    control character, since the codec refuses a final event holding one and the job would never end."""
    text = printable(without_paths(message))
    for internal in internal_names:
        if internal:
            text = text.replace(internal, "the encoder")
    return text or "The job stopped because of an error on our side; please try again later."


def missing_input(what: str) -> PermanentError:
    """The staged file an attempt needs is gone."""
    return PermanentError(
        f"The uploaded file {what} could not be found in storage. Please upload the course again.",
        "NoSuchKey",
    )


def unreadable_media(filename: str, detail: str = "") -> PermanentError:
    """ffprobe could not read the file as a video."""
    shown = without_paths(detail)
    hint = f" ({shown})" if shown else ""
    return PermanentError(
        f"The file {filename!r} is not a video we can read{hint}. "
        "Please upload an MP4, MOV, MKV or WebM video file.",
        "invalid_media",
        detail=detail or None,
    )


def classify(exc: BaseException, what: str = "input") -> AttemptError:
    """The classified form of any exception an attempt raised (G5)."""
    if isinstance(exc, AttemptError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in MISSING_OBJECT_CODES:
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
    if isinstance(exc, DeliveryFailedError | KafkaException | BufferError):
        # BufferError: the producer's local queue is full because the brokers are not acknowledging.
        return TransientError(
            "The message service did not confirm a step of the job in time; the job will be retried.",
            "kafka_unavailable",
        )
    if isinstance(exc, psycopg.OperationalError):
        return TransientError(
            "The job database could not be reached for a moment; the job will be retried.",
            "database_unavailable",
        )
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        # botocore's ConnectTimeoutError is an EndpointConnectionError.
        return TransientError("Storage could not be reached; the job will be retried.", "storage_unavailable")
    if isinstance(exc, BotoCoreError):
        # ReadTimeoutError and every other failure of a storage request on the way.
        return TransientError("A storage request failed; the job will be retried.", "storage_unavailable")
    if isinstance(exc, ConnectionError | socket.timeout):
        # ConnectionResetError, BrokenPipeError…; socket.timeout is TimeoutError.
        return TransientError("A connection was interrupted; the job will be retried.", "connection_lost")
    if isinstance(exc, subprocess.TimeoutExpired):
        return TransientError(
            "A step of the encode did not answer in time; the job will be retried.", "step_timeout"
        )
    if isinstance(exc, OSError):
        return TransientError(
            "A system error interrupted the encode; the job will be retried.", "system_error"
        )
    # The exception's text stays in the encoder's log (attempt.py logs it): it may name paths, hosts
    # or internals, so the person reading the job's status gets a plain sentence instead.
    return PermanentError(
        "The encoder hit an unexpected error. The team can find the details in its logs; "
        "please try again later.",
        "internal_error",
    )


def signal_name(number: int) -> str:
    """SIGKILL for 9 (for logs)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
