"""Jobs and schedules of the pipeline.

- ``spend_warehouse_job``: every asset of the project (raw layer, dbt models, alerts added by
  other modules join automatically), every 15 minutes by default (``SPEND_WAREHOUSE_SCHEDULE``);
- ``extract_job``: only the raw layer;
- ``spend_warehouse_rollback_job``: the whole pipeline with a wider re-read of the last days
  (``rollback_days``), daily: repairs rows that arrived later than the incremental window, which
  the reconciliation check reports (Fivetran-style rollback sync).
"""

import os

import dagster as dg

from dagster_project.defs.ingest.assets import RAW_GROUP, raw_error_logs, raw_spend_logs

SCHEDULE_ENV = "SPEND_WAREHOUSE_SCHEDULE"
DEFAULT_SCHEDULE = "*/15 * * * *"
ROLLBACK_SCHEDULE_ENV = "SPEND_WAREHOUSE_ROLLBACK_SCHEDULE"
DEFAULT_ROLLBACK_SCHEDULE = "30 3 * * *"
ROLLBACK_DAYS = 3


def rollback_run_config(days: int = ROLLBACK_DAYS) -> dict:
    """Run config re-reading the last ``days`` UTC days of both fact tables."""
    config = {"config": {"rollback_days": days}}
    return {"ops": {op.op.name: config for op in (raw_spend_logs, raw_error_logs)}}


spend_warehouse_job = dg.define_asset_job(
    name="spend_warehouse_job",
    selection=dg.AssetSelection.all(),
    description="The whole pipeline: extract, model, alert.",
)

extract_job = dg.define_asset_job(
    name="extract_job",
    selection=dg.AssetSelection.groups(RAW_GROUP),
    description="Only the raw layer: SpendLogs, ErrorLogs and entity snapshots.",
)

spend_warehouse_rollback_job = dg.define_asset_job(
    name="spend_warehouse_rollback_job",
    selection=dg.AssetSelection.all(),
    config=rollback_run_config(),
    description=f"The whole pipeline, re-reading the last {ROLLBACK_DAYS} days of spend logs.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    """The schedules, with cron expressions from the environment (read at load time)."""
    return dg.Definitions(
        jobs=[spend_warehouse_job, extract_job, spend_warehouse_rollback_job],
        schedules=[
            dg.ScheduleDefinition(
                name="spend_warehouse_schedule",
                job=spend_warehouse_job,
                cron_schedule=os.environ.get(SCHEDULE_ENV) or DEFAULT_SCHEDULE,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.RUNNING,
            ),
            dg.ScheduleDefinition(
                name="spend_warehouse_rollback_schedule",
                job=spend_warehouse_rollback_job,
                cron_schedule=os.environ.get(ROLLBACK_SCHEDULE_ENV) or DEFAULT_ROLLBACK_SCHEDULE,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.RUNNING,
            ),
        ],
    )
