"""End-to-end tests use the same real stack as the integration tests."""

from tests.integration.conftest import db, producer, s3, stack

__all__ = ["db", "producer", "s3", "stack"]
