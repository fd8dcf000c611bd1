"""A real api process per test module: its own topics, Postgres schema and bucket, a real projector."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest
from psycopg import sql

from services.api.auth import Role, create_user
from services.core.settings import Settings
from services.core.storage import s3_client
from tests.integration.test_ffmpeg import make_clip
from tests.support.projector import isolated
from tests.support.services import start_api, start_projector, stop


@dataclass
class ApiStack:
    """An api and a projector over isolated topics, schema and bucket."""

    settings: Settings
    base_url: str
    api: subprocess.Popen[bytes]

    def user(self, role: Role = Role.INSTRUCTOR) -> tuple[str, str]:
        """A new user of `role`; returns (name, token)."""
        name = f"{role.value}-{uuid4().hex[:8]}"
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.database_schema))
            )
            _, token = create_user(conn, name, role)
        return name, token

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


@pytest.fixture(scope="module")
def stack_settings(settings: Settings) -> Iterator[Settings]:
    """Topics, schema and bucket of this module's own."""
    with isolated(settings, partitions=2) as scoped:
        yield from own_bucket(
            scoped.model_copy(
                update={"max_upload_bytes": 64 * 1024**2, "max_videos": 3, "upload_part_bytes": 5 * 1024**2}
            )
        )


@pytest.fixture(scope="module")
def api_stack(stack_settings: Settings) -> Iterator[ApiStack]:
    """A projector and an api, running for the whole module."""
    projector = start_projector(stack_settings)
    api, base = start_api(stack_settings)
    try:
        yield ApiStack(stack_settings, base, api)
    finally:
        stop(api)
        stop(projector)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 1 s H.264/AAC clip, made once."""
    return make_clip(tmp_path_factory.mktemp("clips") / "lecture.mp4", seconds=1.0, size="160x120")
