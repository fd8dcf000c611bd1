"""Postgres and the S3-compatible endpoint, through the same clients the services use."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError

from devtools.stack import s3 as stack_s3
from services.core.settings import Settings
from services.core.storage import ensure_bucket, is_missing_object, public_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def test_postgres_answers_queries_in_the_project_database(db: psycopg.Connection[tuple[object, ...]]) -> None:
    with db.cursor() as cur:
        cur.execute("SELECT current_database(), current_setting('server_version_num')::int")
        row = cur.fetchone()
    assert row is not None
    assert row[0] == "coursecast"
    assert isinstance(row[1], int)
    assert row[1] >= 150000


def test_postgres_round_trips_non_ascii_text(db: psycopg.Connection[tuple[object, ...]]) -> None:
    with db.cursor() as cur:
        cur.execute("CREATE TEMP TABLE course_names (name text)")
        cur.execute("INSERT INTO course_names VALUES (%s)", ("Sub Query 연습문제 풀이",))
        cur.execute("SELECT name FROM course_names")
        assert cur.fetchone() == ("Sub Query 연습문제 풀이",)


def test_s3_put_get_delete_through_boto3(s3: S3Client, settings: Settings) -> None:
    assert ensure_bucket(s3, settings.s3_bucket) is False  # the stack created it
    key = f"staging/{uuid4()}/manifest.json"
    s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b'{"videos": []}', ContentType="application/json")
    got = s3.get_object(Bucket=settings.s3_bucket, Key=key)
    assert got["Body"].read() == b'{"videos": []}'
    assert got["ContentType"] == "application/json"
    s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=settings.s3_bucket, Key=key)
    # The seed incident's error: a deleted staging object is classified as missing, a permanent error.
    assert is_missing_object(caught.value)
    assert public_url(settings, key).endswith(f"/{key}")


def test_published_media_is_world_readable_and_staging_is_not(s3: S3Client, settings: Settings) -> None:
    job = uuid4()
    published, staged = f"hls/{job}/1/0/master.m3u8", f"staging/{job}/manifest.json"
    for key in (published, staged):
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"#EXTM3U\n")
    try:
        # Anonymous, as a player or a CDN edge would fetch them.
        assert httpx.get(public_url(settings, published)).status_code == 200
        assert httpx.get(public_url(settings, staged)).status_code == 403
    finally:
        for key in (published, staged):
            s3.delete_object(Bucket=settings.s3_bucket, Key=key)


def test_the_stack_lets_web_pages_of_any_origin_read_the_bucket_and_write_nothing(
    s3: S3Client, settings: Settings
) -> None:
    # The dashboard's player (hls.js, on the api's origin) reads published HLS from the bucket's origin.
    stack_s3.ensure_bucket(settings)  # what `stack up` runs: idempotent
    (rule,) = s3.get_bucket_cors(Bucket=settings.s3_bucket)["CORSRules"]
    assert rule["AllowedOrigins"] == ["*"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD"]
    assert rule.get("AllowedHeaders") == ["Range"]
