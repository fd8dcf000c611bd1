"""Shared test fixtures: settings for the local stack, and those of tests/support for every directory."""

from __future__ import annotations

import pytest

from services.core.settings import Settings

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment, defaulting to the local stack on 127.0.0.1.

    A test runs several service processes at once: none serves metrics on a fixed port unless the
    test asks for one (tests/e2e/test_observability.py gives each its own free port).
    """
    return Settings(
        encoder_metrics_port=0,
        projector_metrics_port=0,
        watchdog_metrics_port=0,
        notifier_metrics_port=0,
        conductor_metrics_port=0,
    )
