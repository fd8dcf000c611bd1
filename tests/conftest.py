"""Shared test fixtures: settings for the local stack, and those of tests/support for every directory."""

from __future__ import annotations

import pytest

from services.core.settings import Settings

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment, defaulting to the local stack on 127.0.0.1."""
    return Settings()
