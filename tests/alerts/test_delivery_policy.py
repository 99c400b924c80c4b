"""Delivery policy without a receiver: back-off, HTTP status classes, configured destinations."""

from __future__ import annotations

import pytest

from dagster_project.lib.alerts.delivery import (
    RetryPolicy,
    classify_http_status,
    configured_destinations,
)
from dagster_project.settings import ConfigError, load_settings


def test_backoff_schedule():
    policy = RetryPolicy(base_delay_s=30, max_delay_s=600)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 6, 9)] == [30, 60, 120, 600, 600]
    assert policy.delay(1, retry_after_s=90).total_seconds() == 90
    assert [classify_http_status(c) for c in (200, 204, 400, 404, 408, 429, 500, 503)] == [
        "sent",
        "sent",
        "failed",
        "failed",
        "retry",
        "retry",
        "retry",
        "retry",
    ]


def test_destinations_come_from_the_settings_without_echoing_the_secret(tmp_path):
    def destinations(**env):
        return configured_destinations(load_settings(env, dotenv_path=tmp_path / "none"))

    assert destinations() == []
    found = destinations(
        SPEND_ALERTS_SLACK_WEBHOOK_URL="https://hooks.slack.com/x", SPEND_ALERTS_WEBHOOK_URL=""
    )
    assert [d.name for d in found] == ["slack"]
    assert "hooks.slack.com/x" not in repr(found[0])
    with pytest.raises(ConfigError, match="SPEND_ALERTS_WEBHOOK_URL") as info:
        destinations(SPEND_ALERTS_WEBHOOK_URL="ftp://SECRETHOST/x")
    assert "SECRETHOST" not in str(info.value)
