"""How patiently alerts are delivered. Where they go comes from the settings."""

from __future__ import annotations

import dagster as dg

from dagster_project.lib.alerts.delivery import RetryPolicy
from dagster_project.settings import Settings


class AlertDestinationsResource(dg.ConfigurableResource):
    """Delivery policy of the alert destinations.

    The destinations themselves (``SPEND_ALERTS_SLACK_WEBHOOK_URL``, ``SPEND_ALERTS_WEBHOOK_URL``)
    and the first back-off (``SPEND_ALERTS_RETRY_BASE_SECONDS``) are settings: webhook URLs are
    secrets, so they stay out of run configuration, the Dagster UI and the logs.
    """

    max_attempts: int = 10
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0
    max_evaluation_age_minutes: float = 60.0

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        """Back-off and time-out for every destination."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=settings.alert_retry_base_seconds,
            max_delay_s=self.max_delay_s,
            timeout_s=self.timeout_s,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"alert_destinations": AlertDestinationsResource()})
