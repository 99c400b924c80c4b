"""``fct_budget_alerts``: decide budget alerts from the checked marts, once per breach.

The asset reads ``fct_budget_threshold_crossings`` and ``fct_budget_periods`` where dbt built
them (the build DuckDB, or PostgreSQL with ``DBT_TARGET=postgres``), decides every alert the
data justifies (:func:`dagster_project.lib.alerts.decide_alerts`), records the new ones in the
durable ledger (``state/alerts.sqlite``) together with their outbox rows, and mirrors the whole
ledger into the table ``fct_budget_alerts`` beside the marts.

It never decides from data that failed its checks: Dagster does not stop a Python asset when a
dbt test (an asset check) upstream fails (dagster-io/dagster#18472, #25112), so the asset looks
up the latest result of every check on its ancestors first. If any ERROR check failed, it
records a pipeline-health alert (delivered like any alert) and fails the run loudly: silence
would look like "within budget".
"""

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
from dagster_shared.check import CheckError

from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.delivery import destination_names
from dagster_project.lib.alerts.ledger import (
    connect_ledger,
    ledger_path,
    load_alerts,
    record_evaluation,
    record_health_problems,
)
from dagster_project.lib.alerts.marts import (
    ALERTS_TABLE,
    CROSSINGS_MODEL,
    PERIODS_MODEL,
    MartsMissingError,
    find_mart_schema,
    mirror_to_duckdb,
    mirror_to_postgres,
    read_marts,
)
from dagster_project.lib.alerts.messages import health_message
from dagster_project.lib.alerts.records import (
    DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
    BudgetPeriod,
    HealthProblem,
)
from dagster_project.lib.alerts.rules import check_evaluation, decide_alerts, failed_check_problems
from dagster_project.lib.duckdb import WRITER_POOL, connect_writer
from dagster_project.lib.times import as_utc
from dagster_project.settings import Settings

ALERTS_KEY = dg.AssetKey([ALERTS_TABLE])
Marts = tuple[Any, str, Callable[..., int]]  # connection, schema, mirror writer


class AlertsConfig(dg.Config):
    """Per-run knobs of the alert evaluation."""

    evaluated_at: str | None = None
    """Evaluation instant (ISO 8601, UTC); default: the marts' ``evaluated_at``, else now."""
    projection_min_basis_days: float = DEFAULT_PROJECTION_MIN_BASIS_DAYS
    """Days of history the forecast must rest on before a ``projected`` alert fires."""
    projection_min_elapsed_fraction: float = DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION
    """Share of the period that must have elapsed before a ``projected`` alert fires."""
    notify_history: bool = False
    """On the very first evaluation, also send alerts of periods that had already closed."""


class UntrustedDataError(dg.Failure):
    """Upstream data failed its checks: alerts were not evaluated."""


# --- upstream health ---------------------------------------------------------------------------


def upstream_check_evaluations(context: dg.AssetExecutionContext) -> list[dict[str, Any]]:
    """The latest result of every asset check on the ancestors of this asset."""
    graph = _full_asset_graph(context)
    ancestors = graph.get_ancestor_asset_keys(context.asset_key)
    evaluations = []
    for check_key in sorted(graph.get_check_keys_for_assets(ancestors), key=str):
        record = context.instance.get_latest_asset_check_evaluation_record(check_key)
        name = f"{check_key.asset_key.to_user_string()}:{check_key.name}"
        if record is None or record.event is None:
            continue
        if record.status.value == "PLANNED":
            if _run_ended_badly(context.instance, record.run_id, context.run_id):
                evaluations.append(
                    {
                        "check": name,
                        "status": "EXECUTION_FAILED",
                        "description": f"it did not complete in run {record.run_id}",
                    }
                )
            continue
        data = record.event.dagster_event.asset_check_evaluation_data
        evaluations.append(check_evaluation(data, record.status.value))
    return evaluations


def _full_asset_graph(context: dg.AssetExecutionContext):
    """The code location's asset graph, or the run's own when it runs outside one.

    Runs launched by the daemon or the UI know their code location, so checks of ancestors
    outside the run's selection are seen too. An in-process run (``spendwh run``, tests) has
    only its job's graph, which holds the checks of every asset the job executes.
    """
    try:
        return context.repository_def.asset_graph
    except CheckError:  # "No repository definition was set on the step context"
        return context.job_def.asset_layer.asset_graph


def _run_ended_badly(instance: dg.DagsterInstance, run_id: str, current_run_id: str) -> bool:
    if run_id == current_run_id:
        return False
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status in {
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }


# --- where the marts are ------------------------------------------------------------------------


@contextlib.contextmanager
def open_marts(settings: Settings) -> Iterator[Marts]:
    """The connection, schema and mirror writer for the configured dbt target.

    DuckDB (default): the build database, under its writer lock. PostgreSQL
    (``DBT_TARGET=postgres``): the schema dbt builds the marts in, from the same variables the
    dbt assets use. Missing marts fail the run with the fix (run dbt first).
    """
    with contextlib.ExitStack() as stack:
        if settings.dbt_target == "postgres":
            target = settings.postgres
            conn = stack.enter_context(psycopg.connect(target.url, autocommit=True))
            where, mirror = f"the PostgreSQL target ({target.schema})", mirror_to_postgres
        else:
            conn = stack.enter_context(
                connect_writer(settings.build_path, limits=settings.duckdb_config)
            )
            where, mirror = f"the build database {settings.build_path}", mirror_to_duckdb
        try:
            schema = find_mart_schema(conn, where)
        except MartsMissingError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        yield conn, schema, mirror


# --- the asset ---------------------------------------------------------------------------------


def evaluation_time(configured: str | None, periods: list[BudgetPeriod]) -> datetime:
    """The instant alerts are evaluated at.

    The configured instant if any; else the marts' ``evaluated_at`` (dbt's evaluation instant,
    its build time unless pinned by var ``budget_as_of``), so that "current period" and
    "closed period" mean the same here as in the marts; else now.
    """
    if configured is not None:
        return as_utc(datetime.fromisoformat(configured.replace("Z", "+00:00")))
    stamps = [period.evaluated_at for period in periods if period.evaluated_at is not None]
    return max(stamps) if stamps else datetime.now(UTC)


def refuse_untrusted_data(
    problems: list[HealthProblem],
    settings: Settings,
    now: datetime,
    context: dg.AssetExecutionContext,
) -> None:
    """Record a pipeline-health alert for ``problems`` and fail the run (no-op when healthy)."""
    if not problems:
        return
    message = health_message(problems)
    conn = connect_ledger(ledger_path(settings.state_dir))
    try:
        destinations = destination_names(settings)
        opened = record_health_problems(conn, problems, message, destinations, now)
    finally:
        conn.close()
    context.log.error(message)
    raise UntrustedDataError(
        description=message,
        metadata={"problems": [p.key for p in problems], "new_health_events": len(opened)},
    )


@dg.asset(
    key=ALERTS_KEY,
    deps=[dg.AssetKey([PERIODS_MODEL]), dg.AssetKey([CROSSINGS_MODEL])],
    group_name="alerts",
    kinds={"duckdb", "sqlite"},
    pool=WRITER_POOL,
    description=(
        "Budget alert ledger: one row per (entity, budget, period, alert type, threshold); "
        "durable in state/alerts.sqlite, mirrored into the warehouse."
    ),
)
def fct_budget_alerts(
    context: dg.AssetExecutionContext, config: AlertsConfig, settings: SettingsResource
) -> dg.MaterializeResult:
    """Decide, record and mirror budget alerts from checked, fresh marts."""
    settings = settings.get()
    problems = failed_check_problems(upstream_check_evaluations(context))
    refuse_untrusted_data(problems, settings, datetime.now(UTC), context)
    destinations = destination_names(settings)
    with open_marts(settings) as (conn, schema, mirror):
        crossings, periods = read_marts(conn, schema)
        now = evaluation_time(config.evaluated_at, periods)
        decided = decide_alerts(
            crossings,
            periods,
            now,
            min_basis_days=config.projection_min_basis_days,
            min_elapsed_fraction=config.projection_min_elapsed_fraction,
        )
        ledger = connect_ledger(ledger_path(settings.state_dir))
        try:
            result = record_evaluation(
                ledger,
                decided,
                destinations,
                now,
                ran_at=datetime.now(UTC),
                notify_history=config.notify_history,
            )
            everything = load_alerts(ledger)
        finally:
            ledger.close()
        rows = mirror(conn, schema, everything)
    if not destinations and result.new_alert_ids:
        context.log.warning(
            f"{len(result.new_alert_ids)} new alert(s) recorded but not sent: no destination "
            "is configured (set SPEND_ALERTS_SLACK_WEBHOOK_URL and/or SPEND_ALERTS_WEBHOOK_URL)"
        )
    context.log.info(
        f"{len(decided)} alert(s) justified by the data, {len(result.new_alert_ids)} new, "
        f"{result.queued} queued for delivery, {rows} in the ledger"
    )
    new = set(result.new_alert_ids)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "new_alerts": len(new),
            "new_late_alerts": sum(a.is_late for a in decided if a.alert_id in new),
            "queued_for_delivery": result.queued,
            "recorded_as_history": result.history,
            "destinations": ", ".join(destinations) or "none",
            "evaluated_at": now.isoformat(),
            "schema": schema,
        }
    )
