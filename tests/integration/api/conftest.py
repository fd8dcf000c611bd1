"""A real api process per test module: its own topics, Postgres schema and bucket, a real projector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.settings import Settings
from tests.support.api import ApiStack, own_bucket
from tests.support.projector import isolated
from tests.support.services import start_api, start_projector, stop
from tests.support.staging import make_clip


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
