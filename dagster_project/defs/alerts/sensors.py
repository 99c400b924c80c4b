"""``deliver_budget_alerts``: the outbox sender, the dead man's switch, and run failures.

Each tick sends the due outbox rows of the ledger (new alerts, retries whose back-off has
passed, rows left pending by a crash) to the configured destinations, at most once each (see
:mod:`dagster_project.lib.alerts.delivery`). It launches no runs: its result is the delivery log.

It also watches the evaluation itself: if alerts have not been evaluated for longer than
``max_evaluation_age_minutes`` (the pipeline is failing or not scheduled), it opens a
pipeline-health alert, because no news would otherwise look like "within budget".

``alert_on_pipeline_failure`` covers the faster case: a failed run (a blocking check on the raw
layer failed, dbt failed, the alert asset refused untrusted data) opens a pipeline-health alert
at once; the next healthy evaluation resolves it.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.delivery import (
    configured_destinations,
    deliver_pending,
    destination_names,
)
from dagster_project.lib.alerts.ledger import (
    connect_ledger,
    get_meta,
    ledger_path,
    record_health_problems,
    record_run_failure,
)
from dagster_project.lib.alerts.messages import health_message
from dagster_project.lib.alerts.records import HealthProblem
from dagster_project.lib.times import iso, parse_iso


def stale_evaluation_problem(
    last_evaluated_at: datetime | None, now: datetime, max_age: timedelta
) -> HealthProblem | None:
    """A problem when the last successful evaluation is older than ``max_age``."""
    if last_evaluated_at is None or now - last_evaluated_at <= max_age:
        return None
    return HealthProblem(
        key="evaluation:stale",
        message=(
            f"budget alerts were last evaluated at {iso(last_evaluated_at)}, more than "
            f"{max_age.total_seconds() / 60:g} minutes ago (the pipeline is failing or not "
            "scheduled; check the Dagster runs)"
        ),
    )


@dg.sensor(
    name="deliver_budget_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Send new budget alerts to Slack / the JSON webhook, exactly once each.",
)
def deliver_budget_alerts(
    context: dg.SensorEvaluationContext,
    settings: SettingsResource,
    alert_destinations: AlertDestinationsResource,
) -> dg.SkipReason:
    """Deliver due outbox rows; the tick's skip reason is the delivery summary."""
    config = settings.get()
    ledger = ledger_path(config.state_dir)
    if not ledger.exists():
        return dg.SkipReason(f"no alert ledger yet at {ledger}: alerts have not been evaluated")
    destinations = configured_destinations(config)
    now = datetime.now(UTC)
    conn = connect_ledger(ledger)
    try:
        problem = stale_evaluation_problem(
            parse_iso(get_meta(conn, "last_evaluated_at")),
            now,
            timedelta(minutes=alert_destinations.max_evaluation_age_minutes),
        )
        if problem is not None:
            context.log.error(problem.message)
            record_health_problems(
                conn, [problem], health_message([problem]), [d.name for d in destinations], now
            )
    finally:
        conn.close()
    if not destinations:
        return dg.SkipReason(
            "no alert destination configured: alerts are recorded in the ledger and "
            "fct_budget_alerts but not sent (set SPEND_ALERTS_SLACK_WEBHOOK_URL and/or "
            "SPEND_ALERTS_WEBHOOK_URL)"
        )
    report = deliver_pending(ledger, destinations, policy=alert_destinations.retry_policy(config))
    for error in report.errors:
        context.log.warning(error)
    return dg.SkipReason(report.summary())


@dg.run_failure_sensor(
    name="alert_on_pipeline_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # Also runs that no code location launched: an in-process 'spendwh run' that was killed and
    # then failed by run monitoring (the instance holds this project's runs only).
    monitor_all_code_locations=True,
    description="A failed pipeline run opens a pipeline-health alert (sent by the outbox).",
)
def alert_on_pipeline_failure(
    context: dg.RunFailureSensorContext, settings: SettingsResource
) -> None:
    """Record a pipeline-health event for the failed run; delivery happens on the next tick."""
    config = settings.get()
    failed_steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    problem = record_run_failure(
        ledger_path(config.state_dir),
        job_name=context.dagster_run.job_name,
        failed_steps=failed_steps,
        reason=context.failure_event.message or "run failed",
        destinations=destination_names(config),
        now=datetime.now(UTC),
    )
    context.log.error(problem.message)
