"""Object storage through boto3, exactly as against AWS S3 or MinIO; the endpoint comes from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from services.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# G5: botocore's adaptive retry mode backs off exponentially on 5xx, throttling and connection
# resets before an error ever reaches our code, which then treats what is left as transient.
_CLIENT_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "adaptive"},
    s3={"addressing_style": "path"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
)


def s3_client(settings: Settings) -> S3Client:
    """An S3 client for the configured endpoint and credentials."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=_CLIENT_CONFIG,
    )


def ensure_bucket(client: S3Client, bucket: str) -> bool:
    """Create the bucket if it is missing; True when it was created now."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        client.create_bucket(Bucket=bucket)
        return True
    return False


def public_url(settings: Settings, key: str) -> str:
    """The URL a player fetches `key` from, under the CDN base."""
    return f"{settings.cdn_base_url.rstrip('/')}/{key.lstrip('/')}"


def is_missing_object(exc: ClientError) -> bool:
    """True when S3 says the key does not exist — a permanent error, never worth a retry (G5)."""
    return exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}
