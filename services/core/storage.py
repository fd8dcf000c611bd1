"""Object storage through boto3, exactly as against AWS S3 or MinIO; the endpoint comes from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from uuid import UUID

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


def presigning_client(settings: Settings) -> S3Client:
    """A client that only signs URLs handed to clients: for the public endpoint (s3_public_url).

    A URL signed for the services' own address (a container name, say) is unreachable from outside
    the deployment, and SigV4 signs the Host header, so the host cannot be rewritten afterwards.
    botocore presigns with the legacy SigV2 unless told otherwise: SigV2 leaves the query unsigned
    (a holder could alter it) and S3-compatible servers such as Versity's gateway refuse it, hence
    s3v4. Signing needs no request: this client never talks to the endpoint itself."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_public_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=_CLIENT_CONFIG.merge(Config(signature_version="s3v4")),
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


def prepare_bucket(settings: Settings) -> bool:
    """Create the bucket if missing and let anyone read what is published under hls/; everything
    else (staging/, uploads/) stays private; web pages of any origin may GET it (CORS). Idempotent;
    True when the bucket was created now."""
    client = s3_client(settings)
    created = ensure_bucket(client, settings.s3_bucket, settings.s3_region)
    allow_public_read(client, settings.s3_bucket, PUBLISHED_PREFIX)
    # The dashboard's player reads published HLS from the page's origin (see below).
    allow_cross_origin_reads(client, settings.s3_bucket)
    return created


def allow_cross_origin_reads(client: S3Client, bucket: str) -> None:
    """A CORS rule letting web pages of any origin read the bucket with GET/HEAD (and Range).

    The dashboard (served by the api) plays published HLS with hls.js, which fetches playlists and
    segments with XHR from the CDN origin, another origin than the page's: without this rule the
    browser would refuse to hand the responses to the script. CORS grants no access by itself: what a
    page may read is still what the bucket policy makes public (hls/), and no write method is allowed.
    """
    client.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": ["*"],
                    "AllowedMethods": ["GET", "HEAD"],
                    "AllowedHeaders": ["Range"],
                    "ExposeHeaders": ["Content-Length", "Content-Range", "ETag"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


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


def published_prefix(job_id: UUID) -> str:
    """The folder of everything a job published, every attempt of it: hls/<job_id>/."""
    return f"{PUBLISHED_PREFIX}{job_id}/"


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
