"""Object storage through boto3, exactly as against AWS S3 or MinIO; the endpoint comes from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError

from services.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

# The codes S3 (and MinIO, moto) answer with when a key or a bucket does not exist: permanent, never
# worth a retry (G5). A HEAD request has no body, hence the bare status codes.
MISSING_OBJECT_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
MISSING_BUCKET_CODES: Final = frozenset({"NoSuchBucket", "404", "NotFound"})

# G5: botocore's adaptive retry mode backs off exponentially on 5xx, throttling and connection
# resets before an error ever reaches our code, which then treats what is left as transient.
_CLIENT_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "adaptive"},
    s3={"addressing_style": "path"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
)


def s3_client(settings: Settings, config: Config | None = None) -> S3Client:
    """An S3 client for the configured endpoint and credentials (services' retrying config by default)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=_CLIENT_CONFIG.merge(config) if config is not None else _CLIENT_CONFIG,
    )


# Published HLS and images live under this prefix; it is what the CDN serves.
PUBLISHED_PREFIX = "hls/"


def ensure_bucket(client: S3Client, bucket: str, region: str = "us-east-1") -> bool:
    """Create the bucket if it is missing; True when it was created now."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) not in MISSING_BUCKET_CODES:
            raise
        if region == "us-east-1":
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        return True
    return False


def allow_public_read(client: S3Client, bucket: str, prefix: str) -> None:
    """A bucket policy that lets anyone GET objects under `prefix` (and nothing else)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicReadOfPublishedMedia",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            }
        ],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=orjson.dumps(policy).decode())


def public_url(settings: Settings, key: str) -> str:
    """The URL a player fetches `key` from, under the CDN base."""
    return f"{settings.cdn_base_url.rstrip('/')}/{key.lstrip('/')}"


def presigned_get_url(client: S3Client, bucket: str, key: str, expires_s: int) -> str:
    """A URL that lets whoever holds it GET `key` (ranged reads included) for `expires_s` seconds,
    with no other credential: the encoder hands it to ffmpeg to stream a source from storage. The
    URL is a credential until it expires: never log it or put it in a message."""
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
    )


def error_code(exc: ClientError) -> str:
    """The error code S3 answered with ("" when it gave none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing_object(exc: ClientError) -> bool:
    """True when S3 says the key does not exist — a permanent error, never worth a retry (G5)."""
    return error_code(exc) in MISSING_OBJECT_CODES


def delete_prefix(client: S3Client, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`, a page (up to 1,000 keys) per request; returns how many."""
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted
