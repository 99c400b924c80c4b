"""Where alerts go: destinations from the environment, and how patiently they are retried."""

from __future__ import annotations

import os

import dagster as dg

from dagster_project.lib.delivery import (
    SLACK_ENV,
    WEBHOOK_ENV,
    Destination,
    RetryPolicy,
    destinations_from_env,
)


class AlertDestinationsResource(dg.ConfigurableResource):
    """Alert destinations and delivery policy.

    The resource holds the *names* of the environment variables, never their values: webhook
    URLs are secrets, so they stay out of run configuration, the Dagster UI and the logs, and
    are read only when a message is sent.
    """

    slack_webhook_url_env: str = SLACK_ENV
    webhook_url_env: str = WEBHOOK_ENV
    max_attempts: int = 10
    base_delay_s: float = 30.0
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0
    max_evaluation_age_minutes: float = 60.0

    def destinations(self) -> list[Destination]:
        """The destinations configured now (possibly none)."""
        return destinations_from_env(
            {
                SLACK_ENV: os.environ.get(self.slack_webhook_url_env, ""),
                WEBHOOK_ENV: os.environ.get(self.webhook_url_env, ""),
            }
        )

    def retry_policy(self) -> RetryPolicy:
        """Back-off and time-out for every destination."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=self.base_delay_s,
            max_delay_s=self.max_delay_s,
            timeout_s=self.timeout_s,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"alert_destinations": AlertDestinationsResource()})
