"""Settings: safe defaults for the local stack, refusal of values that break a guarantee, documentation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.settings import PROJECT_ROOT, Settings


def test_defaults_point_at_the_local_stack_and_the_design_limits() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.encode_time_limit_s == 14_400
    assert settings.heartbeat_interval_s == 30
    assert settings.stall_timeout_s == 300
    assert settings.max_poll_interval_ms == 300_000
    assert settings.max_attempts == 3


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSECAST_ENCODE_TIME_LIMIT_S", "5")
    monkeypatch.setenv("COURSECAST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    settings = Settings()
    assert (settings.encode_time_limit_s, settings.kafka_bootstrap_servers) == (5, "127.0.0.1:19092")


def test_heartbeat_slower_than_the_stall_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSECAST_HEARTBEAT_INTERVAL_S", "300")
    monkeypatch.setenv("COURSECAST_STALL_TIMEOUT_S", "60")
    with pytest.raises(ValidationError, match="HEARTBEAT_INTERVAL_S must be shorter"):
        Settings()


def test_min_insync_replicas_above_replication_is_refused() -> None:
    with pytest.raises(ValidationError, match="MIN_INSYNC_REPLICAS"):
        Settings(topic_replication_factor=1, topic_min_insync_replicas=2)


def test_every_setting_is_documented_in_docs_configuration() -> None:
    documented = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`COURSECAST_{name.upper()}`" not in documented]
    assert missing == []


def test_production_refuses_every_built_in_secret_and_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSECAST_ENV", "production")
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    for name in ("S3_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID", "DATABASE_URL"):
        assert f"COURSECAST_{name}" in message


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://coursecast:coursecast@db.internal:5432/coursecast",
        "host=db.internal user=coursecast password=coursecast dbname=coursecast",
    ],
)
def test_production_refuses_the_built_in_database_password_in_any_url_form(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("COURSECAST_ENV", "production")
    monkeypatch.setenv("COURSECAST_S3_ACCESS_KEY_ID", "AKIAPRODUCTION")
    monkeypatch.setenv("COURSECAST_S3_SECRET_ACCESS_KEY", "a-real-secret")
    monkeypatch.setenv("COURSECAST_DATABASE_URL", database_url)
    with pytest.raises(ValidationError, match="COURSECAST_DATABASE_URL"):
        Settings()


def test_production_starts_with_secrets_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSECAST_ENV", "production")
    monkeypatch.setenv("COURSECAST_S3_ACCESS_KEY_ID", "AKIAPRODUCTION")
    monkeypatch.setenv("COURSECAST_S3_SECRET_ACCESS_KEY", "a-real-secret")
    monkeypatch.setenv("COURSECAST_DATABASE_URL", "postgresql://coursecast:s3cr3t@db.internal/coursecast")
    assert Settings().env == "production"


def test_development_keeps_the_local_stack_defaults() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.s3_secret_access_key == "coursecast-local-secret"


def test_the_encoders_retry_group_is_derived_from_their_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry topic is read in a group of its own (services/encoder/consumer.py), named after the
    commands group, so one setting still names a deployment's encoders."""
    assert Settings().encoder_retry_group_id == "encoders.retry"
    monkeypatch.setenv("COURSECAST_ENCODER_GROUP_ID", "encoders-eu")
    settings = Settings()
    assert (settings.encoder_group_id, settings.encoder_retry_group_id) == (
        "encoders-eu",
        "encoders-eu.retry",
    )
