"""Jobs, schedules and the build sensor of the pipeline.

The scheduled path is two runs, so a quiet proxy costs one small run:

- ``extract_job``: the raw layer and its checks, every 15 minutes by default
  (``SPEND_WAREHOUSE_SCHEDULE``);
- ``build_job``: everything downstream (dbt models, budget alerts, the published warehouse),
  launched by ``spend_warehouse_build_sensor`` after each successful extraction when a build is
  due (:func:`~dagster_project.defs.dbt.assets.build_decision`: new or changed rows or
  snapshots, a changed dbt project, an evaluation that is due, an open health problem). An
  extraction that fails a blocking check launches no build, so no alert is computed from data
  that failed its checks; with nothing new, the 94 model and alert assets and their 91 checks are
  not even planned;
- ``spend_warehouse_job``: every asset in one run (the UI's "materialize all"; the dbt asset
  skips the build itself when nothing is new);
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
from filelock import Timeout

from dagster_project.defs.dbt.assets import BuildDecision, build_decision
from dagster_project.defs.ingest.assets import RAW_GROUP, raw_error_logs, raw_spend_logs
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.delivery import destination_names
from dagster_project.lib.alerts.ledger import ledger_path, record_run_failure
from dagster_project.lib.alerts.rules import check_evaluation, failed_check_problems
from dagster_project.lib.duckdb import writer_lock
from dagster_project.lib.run_launcher import PID_TAG
from dagster_project.settings import Settings, config_values, schedules_from

ROLLBACK_DAYS = 3
EXTRACTION_TAG = "spendwh/extraction_run"
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

build_job = dg.define_asset_job(
    name="build_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(RAW_GROUP),
    description="Everything downstream of the raw layer: dbt models, budget alerts, publish.",
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


def build_due(settings: Settings, now: datetime) -> BuildDecision:
    """Whether the build job should follow an extraction (the sensor's and ``spendwh run``'s
    decision). While another process writes the build database the decision is left to the
    build's own asset, which makes it again under the writer lock."""
    lock = writer_lock(settings.build_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return BuildDecision(True, "building: the build database is busy; the build decides", "")
    try:
        return build_decision(settings, now=now)
    finally:
        lock.release()


@dg.run_status_sensor(
    name="spend_warehouse_build_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[extract_job],
    request_job=build_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
)
def build_after_extraction(context: dg.RunStatusSensorContext, settings: SettingsResource):
    """After each successful extraction, launch ``build_job`` when a build is due: at most one
    build per extraction (the run key), none while one is queued or running."""
    extraction = context.dagster_run
    if PID_TAG in extraction.tags:
        return dg.SkipReason(f"run {extraction.run_id} came from spendwh run, which builds itself")
    running = in_progress_run(context.instance, build_job.name)
    if running is not None:
        return dg.SkipReason(f"build run {running} is queued or in progress")
    decision = build_due(settings.get(), datetime.now(UTC))
    if not decision.build:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(run_key=extraction.run_id, tags={EXTRACTION_TAG: extraction.run_id})


@dg.definitions
def schedules() -> dg.Definitions:
    """The jobs and schedules; the cron expressions are settings, read when definitions load."""
    cron, rollback_cron = schedules_from(config_values())
    return dg.Definitions(
        jobs=[spend_warehouse_job, extract_job, build_job, spend_warehouse_rollback_job],
        sensors=[build_after_extraction],
        schedules=[
            pipeline_schedule("spend_warehouse_schedule", extract_job, cron),
            pipeline_schedule(
                "spend_warehouse_rollback_schedule", spend_warehouse_rollback_job, rollback_cron
            ),
        ],
    )
