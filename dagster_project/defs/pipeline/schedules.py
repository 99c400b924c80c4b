"""Jobs and schedules of the whole pipeline.

- ``spend_warehouse_job``: every asset of the project (raw layer, dbt models, alerts, the
  published warehouse), every 15 minutes by default (``SPEND_WAREHOUSE_SCHEDULE``);
- ``extract_job``: only the raw layer;
- ``spend_warehouse_rollback_job``: the whole pipeline with a wider re-read of the last days
  (``rollback_days``), daily: repairs rows that arrived later than the incremental window, which
  the reconciliation check reports (Fivetran-style rollback sync); it is also the lake's daily
  maintenance (``maintenance``): every day partition compacted to one file, old Iceberg
  snapshots expired.

The jobs run their steps with the executor ``SPEND_WAREHOUSE_EXECUTOR`` names
(:mod:`dagster_project.defs.pipeline.executors`): by default in the run worker's own process, as
``spendwh run`` does; or a process per step; or on Celery workers. Every job carries the
failure hook :func:`record_failed_step`, so a failed step opens a pipeline-health alert however
the run was started (schedule, UI, ``spendwh run``); runs that die without running hooks (a
killed worker) are caught by the run-failure sensor once run monitoring has marked them failed.
A schedule tick is skipped while a run of its job is still queued or in progress, so slow runs
never pile up behind each other.
"""

from datetime import UTC, datetime

import dagster as dg

from dagster_project.defs.ingest.assets import RAW_GROUP, raw_error_logs, raw_spend_logs
from dagster_project.lib.alerts.delivery import destination_names
from dagster_project.lib.alerts.ledger import ledger_path, record_run_failure
from dagster_project.lib.alerts.rules import check_evaluation, failed_check_problems
from dagster_project.settings import config_values, schedules_from

ROLLBACK_DAYS = 3
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def rollback_run_config(days: int = ROLLBACK_DAYS) -> dict:
    """Run config re-reading the last ``days`` UTC days of both fact tables, with the lake's
    maintenance."""
    config = {"config": {"rollback_days": days, "maintenance": True}}
    return {"ops": {op.op.name: config for op in (raw_spend_logs, raw_error_logs)}}


def check_evaluations_of_run(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """The asset checks evaluated in ``run_id``, as ``failed_check_problems`` takes them."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [
        check_evaluation(record.dagster_event.asset_check_evaluation_data, "SUCCEEDED")
        for record in records
    ]


def failure_reason(error: BaseException | None, evaluations: list[dict]) -> str:
    """What the on-call person reads: the failed blocking checks among ``evaluations`` and why
    they failed (a ``DagsterAssetCheckFailedError`` names neither), else the step's exception."""
    problems = failed_check_problems(evaluations)
    if problems:
        return "; ".join(p.message for p in problems)
    return f"{type(error).__name__}: {error}" if error else "step failed"


@dg.failure_hook(required_resource_keys={"settings"})
def record_failed_step(context: dg.HookContext) -> None:
    """Open a pipeline-health alert for the run of the failed step (one open per job)."""
    settings = context.resources.settings.get()
    error = context.op_exception
    checks = check_evaluations_of_run(context.instance, context.run_id)
    problem = record_run_failure(
        ledger_path(settings.state_dir),
        job_name=context.job_name,
        failed_steps=[context.step_key],
        reason=failure_reason(error, checks),
        destinations=destination_names(settings),
        now=datetime.now(UTC),
    )
    context.log.error(f"pipeline-health alert recorded: {problem.message}")


spend_warehouse_job = dg.define_asset_job(
    name="spend_warehouse_job",
    selection=dg.AssetSelection.all(),
    description="The whole pipeline: extract, model, alert, publish.",
    hooks={record_failed_step},
)

extract_job = dg.define_asset_job(
    name="extract_job",
    selection=dg.AssetSelection.groups(RAW_GROUP),
    description="Only the raw layer: SpendLogs, ErrorLogs and entity snapshots.",
    hooks={record_failed_step},
)

spend_warehouse_rollback_job = dg.define_asset_job(
    name="spend_warehouse_rollback_job",
    selection=dg.AssetSelection.all(),
    config=rollback_run_config(),
    description=f"The whole pipeline, re-reading the last {ROLLBACK_DAYS} days of spend logs.",
    hooks={record_failed_step},
)


def in_progress_run(instance: dg.DagsterInstance, job_name: str) -> str | None:
    """The id of a queued or running run of ``job_name``, if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS), limit=1
    )
    return records[0].dagster_run.run_id if records else None


def pipeline_schedule(name: str, job, cron: str) -> dg.ScheduleDefinition:
    """A running-by-default schedule of ``job`` that skips while a run of it is in progress."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        running = in_progress_run(context.instance, job.name)
        if running is not None:
            return dg.SkipReason(f"run {running} of {job.name} is still in progress")
        return dg.RunRequest()

    return _schedule


@dg.definitions
def schedules() -> dg.Definitions:
    """The jobs and schedules; the cron expressions are settings, read when definitions load."""
    cron, rollback_cron = schedules_from(config_values())
    return dg.Definitions(
        jobs=[spend_warehouse_job, extract_job, spend_warehouse_rollback_job],
        schedules=[
            pipeline_schedule("spend_warehouse_schedule", spend_warehouse_job, cron),
            pipeline_schedule(
                "spend_warehouse_rollback_schedule", spend_warehouse_rollback_job, rollback_cron
            ),
        ],
    )
