"""The staged source as ffmpeg and ffprobe read it: streamed from S3, never downloaded first.

`staged_input` gives a presigned GET URL of the source, valid past the attempt's time limit, which
ffmpeg may read only with the protocols that URL needs (mediaprobe's leash), by ranged reads.
`read_failure` says what a read that storage broke off means (G5): S3 itself is asked whether the
object is gone or forbidden (permanent: the job or task fails with a message a person understands)
or still there (the read failure was transient and the work is retried).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from services.core.manifest import StagedVideo
from services.core.mediaprobe import MediaInput, remote_input
from services.core.settings import Settings
from services.core.storage import is_missing_object, presigned_get_url
from services.encoder.errors import AttemptError, SourceReadError, classify, missing_input

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The longest life S3 gives a presigned URL (SigV4: 7 days).
MAX_PRESIGNED_S = 7 * 24 * 3600


def staged_input(settings: Settings, s3: S3Client, video: StagedVideo) -> MediaInput:
    """`video`'s staged source as a remote input; a missing source fails here (NoSuchKey, G5)."""
    bucket = settings.s3_bucket
    try:
        s3.head_object(Bucket=bucket, Key=video.key)
    except ClientError as exc:
        if is_missing_object(exc):
            raise missing_input(repr(video.filename)) from None
        raise
    expires_s = min(settings.encode_time_limit_s + 3600, MAX_PRESIGNED_S)
    return remote_input(presigned_get_url(s3, bucket, video.key, expires_s), video.filename)


def read_failure(
    settings: Settings, s3: S3Client, video: StagedVideo, failure: SourceReadError
) -> AttemptError:
    """What a broken-off read of `video`'s source means (G5), as S3 tells it now."""
    try:
        s3.head_object(Bucket=settings.s3_bucket, Key=video.key)
    except (ClientError, BotoCoreError) as exc:
        return classify(exc, repr(video.filename))
    return SourceReadError(f"video {video.filename!r}", failure.reason)
