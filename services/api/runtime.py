"""What a request may use: the process's services, chosen once at startup (app.bootstrap)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka.admin import AdminClient

from services.api.auth import User
from services.api.db import JobChanges, Pool
from services.api.metrics import SSE_CLIENTS
from services.api.problems import ProblemError
from services.api.publisher import Publisher
from services.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StreamSlots:
    """Live job streams (SSE) per user in this process; one past the limit is refused with 429."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[object] = Counter()

    @contextlib.contextmanager
    def hold(self, user: User) -> Iterator[None]:
        """One stream slot of `user` while the block runs; 429 when all are taken."""
        if self._open[user.user_id] >= self.limit:
            raise ProblemError(
                429,
                "too-many-streams",
                f"you already follow {self.limit} job streams from this server; close one first",
                title="Too many streams",
                headers={"Retry-After": "5"},
                limit=self.limit,
            )
        self._open[user.user_id] += 1
        SSE_CLIENTS.inc()
        try:
            yield
        finally:
            SSE_CLIENTS.dec()
            self._open[user.user_id] -= 1
            if self._open[user.user_id] <= 0:
                del self._open[user.user_id]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request may use, chosen once at startup (app.bootstrap)."""

    settings: Settings
    pool: Pool
    changes: JobChanges
    publisher: Publisher
    s3: S3Client
    # One Kafka admin client for the process (/readyz), not one per request.
    admin: AdminClient
    streams: StreamSlots
    # Signs the presigned upload URLs for the endpoint clients reach (settings.s3_public_url).
    presigner: S3Client
