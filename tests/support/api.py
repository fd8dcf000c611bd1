"""The api under test: an `ApiStack` (a running api, its settings, users and clients), a bucket of
its own, an api of its own for a module, and the direct-upload dance a client does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx
import psycopg
from psycopg import sql

from services.api.auth import Role, create_user
from services.core.settings import Settings
from services.core.storage import s3_client
from tests.support.projector import isolated
from tests.support.services import Process, start_api, stop


@dataclass
class ApiStack:
    """An api and a projector over isolated topics, schema and bucket."""

    settings: Settings
    base_url: str
    api: Process

    def user(self, role: Role = Role.INSTRUCTOR) -> tuple[str, str]:
        """A new user of `role`; returns (name, token)."""
        name = f"{role.value}-{uuid4().hex[:8]}"
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.database_schema))
            )
            _, token = create_user(conn, name, role)
        return name, token

    def instructor(self) -> httpx.Client:
        """An HTTP client for the api, authenticated as a new instructor."""
        return self.client(self.user()[1])

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for the api, authenticated with `token` when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def own_bucket(settings: Settings) -> Iterator[Settings]:
    """Settings with a bucket of their own, emptied and deleted afterwards."""
    scoped = settings.model_copy(update={"s3_bucket": f"test-{uuid4().hex[:12]}"})
    s3 = s3_client(scoped)
    s3.create_bucket(Bucket=scoped.s3_bucket)
    try:
        yield scoped
    finally:
        for upload in s3.list_multipart_uploads(Bucket=scoped.s3_bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=scoped.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=scoped.s3_bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=scoped.s3_bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=scoped.s3_bucket)


@contextmanager
def api_of_own(
    settings: Settings, partitions: int = 1, api_update: dict[str, Any] | None = None, **overrides: Any
) -> Iterator[ApiStack]:
    """An api (no projector) on topics, schema and bucket of its own, with `overrides` applied; the
    api alone also gets `api_update` (e.g. a Kafka address nobody answers on). Stopped at the end."""
    with isolated(settings, partitions) as scoped:
        for own in own_bucket(scoped.model_copy(update=overrides)):
            served = own.model_copy(update=api_update or {})
            api, base = start_api(served)
            try:
                yield ApiStack(served, base, api)
            finally:
                stop(api)


def direct_upload(
    client: httpx.Client, filename: str, body: bytes, kind: str | None = "video"
) -> httpx.Response:
    """Open a direct upload (of `kind`, or the api's default when None), PUT its parts to S3, and ask
    the api to complete (and check) it; returns the api's answer to the completion."""
    opening: dict[str, Any] = {"filename": filename, "size_bytes": len(body)}
    if kind is not None:
        opening["kind"] = kind
    upload = client.post("/v1/uploads", json=opening)
    assert upload.status_code == 201, upload.text
    etags, offset = [], 0
    for part in upload.json()["parts"]:
        chunk = body[offset : offset + part["size_bytes"]]
        offset += len(chunk)
        put = httpx.put(part["url"], content=chunk)
        assert put.status_code == 200, put.text
        etags.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    return client.post(f"/v1/uploads/{upload.json()['upload_id']}/complete", json={"parts": etags})


def form_head(boundary: str, name: str, curriculum: str, filename: str) -> bytes:
    """The start of a course form streamed by hand: its two fields, then the header of one video part
    (the video's bytes, the closing boundary and the pace are the caller's)."""
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode()
        for field, value in (("name", name), ("curriculum", curriculum))
    )
    return (
        fields
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="videos"; filename="{filename}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
    )
