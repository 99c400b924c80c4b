"""The dbt models as assets, downstream of the raw assets, with dbt tests as asset checks.

One ``@dbt_assets`` definition runs ``dbt build`` on the selected models: models, unit tests and
data tests in dependency order, so a failing (error-severity) test on an upstream model skips the
models downstream of it in the same run, and Dagster records the skipped marts as not
materialized. dbt sources ``raw/<table>`` have the same keys as the extraction's assets, so the
UI shows one lineage graph. The build holds the build database's writer lock; for the postgres
target the raw tables are copied to PostgreSQL first.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster_dbt import dbt_assets

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.dbt.resources import (
    dbt_cli,
    invocations_folder,
    keep_partial_parse,
    prune_command_folders,
    vars_args,
)
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import ledger_path, open_health_problem_count
from dagster_project.lib.dbt.build_inputs import (
    current_inputs,
    last_published,
    missing_postgres_tables,
    missing_tables,
    record_built,
    skip_reason,
)
from dagster_project.lib.dbt.failures import out_of_memory_message, out_of_memory_models
from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres
from dagster_project.lib.dbt.translator import dbt_translator, table_relations
from dagster_project.lib.duckdb import WRITER_POOL, writer_lock
from dagster_project.lib.ingest.lake import Lake
from dagster_project.settings import Settings

DBT_ASSETS_NAME = "spend_warehouse_dbt"
REEVALUATE_AFTER_MINUTES = 20


def build_args(full_refresh: bool = False) -> list[str]:
    """The dbt command the assets run: models and data tests (unit tests run in CI, not here).

    The settings' ``--vars`` are added by the asset (:func:`vars_args`).
    """
    return [
        "build",
        "--exclude-resource-type",
        "unit_test",
        *(["--full-refresh"] if full_refresh else []),
    ]


class DbtBuildConfig(dg.Config):
    """Run configuration of the dbt build."""

    full_refresh: bool = False
    """Rebuild the incremental facts from scratch instead of their recent days."""

    skip_unchanged: bool = True
    """Skip the build, the alert evaluation and the publish when nothing changed since the last
    published warehouse (see ``lib/dbt/build_inputs.py``)."""

    reevaluate_after_minutes: int = REEVALUATE_AFTER_MINUTES
    """Even with nothing new, build and evaluate budgets again once the last publish is this
    old: periods close and forecasts move with the clock alone. With any schedule, evaluations
    are then less than this plus one schedule interval apart, well inside the hour after which
    the delivery sensor reports the evaluation as stale (a schedule of 20 minutes or more
    builds in every run)."""


def missing_models(settings: Settings, relations: Iterable[str]) -> list[str]:
    """The table models absent where the configured target builds them."""
    if settings.dbt_target == "postgres":
        target = settings.postgres
        return missing_postgres_tables(target.url, target.schema, relations)
    return missing_tables(settings.build_path, relations)


@dataclass(frozen=True)
class BuildDecision:
    """Whether a dbt build is due, why, and the fingerprint of what it would read."""

    build: bool
    reason: str
    fingerprint: str


def build_decision(
    settings: Settings,
    *,
    now: datetime,
    max_age: timedelta = timedelta(minutes=REEVALUATE_AFTER_MINUTES),
    models_present: bool | None = None,
) -> BuildDecision:
    """Nothing new, nothing done: is a build (models, alert evaluation, publish) due?

    The one decision behind the dbt asset's skip and the build sensor (which launches the build
    job after an extraction); see :func:`skip_reason`. ``models_present`` None: look, where the
    target builds (call it with the build database's writer lock held, or pass what is known).
    """
    project = dbt_project()
    command = [settings.dbt_target, *build_args(), *vars_args(settings)]
    fingerprint = current_inputs(
        Lake.from_settings(settings), project.project_dir, command
    ).fingerprint()
    if models_present is None:
        relations = table_relations(project.manifest_path, dbt_translator())
        models_present = not missing_models(settings, relations.values())
    skip, reason = skip_reason(
        last_published(settings.state_dir),
        fingerprint,
        now=now,
        max_age=max_age,
        warehouse_exists=settings.warehouse_path.exists(),
        models_present=models_present,
        open_health_problems=open_health_problem_count(ledger_path(settings.state_dir)),
    )
    return BuildDecision(not skip, reason, fingerprint)


def with_row_counts(
    context: dg.AssetExecutionContext,
    events: list[Any],
    relations: Mapping[dg.AssetKey, str],
    build_path,
) -> list[Any]:
    """``events`` with ``dagster/row_count`` on the outputs of table models."""
    import duckdb

    counted: list[Any] = []
    with duckdb.connect(str(build_path)) as conn:
        for event in events:
            key = (
                context.asset_key_for_output(event.output_name)
                if isinstance(event, dg.Output)
                else None
            )
            if key in relations:
                rows = conn.execute(f"select count(*) from {relations[key]}").fetchall()[0][0]
                event = event.with_metadata(
                    {**event.metadata, "dagster/row_count": dg.MetadataValue.int(rows)}
                )
            counted.append(event)
    return counted


def _run_results(invocation) -> dict[str, Any]:
    """The failed invocation's ``run_results.json`` (empty when dbt wrote none)."""
    try:
        return invocation.get_artifact("run_results.json")
    except FileNotFoundError:
        return {}


@dg.definitions
def defs() -> dg.Definitions:
    """The dbt assets; built in a factory so the manifest is parsed at load time if missing."""
    project = dbt_project()
    translator = dbt_translator()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        name=DBT_ASSETS_NAME,
        pool=WRITER_POOL,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def spend_warehouse_dbt(
        context: dg.AssetExecutionContext, settings: SettingsResource, config: DbtBuildConfig
    ) -> Iterator[Any]:
        settings = settings.get()
        dbt = dbt_cli(project, settings)
        command = [*build_args(config.full_refresh), *vars_args(settings)]
        forced = config.full_refresh or not config.skip_unchanged
        with writer_lock(settings.build_path):
            # Decided again here, under the lock, whoever launched the run (the sensor, the UI,
            # ``spendwh run``): the lake may have moved since. Forced builds need only the
            # fingerprint (no look for missing model tables).
            decision = build_decision(
                settings,
                now=datetime.now(UTC),
                max_age=timedelta(minutes=config.reevaluate_after_minutes),
                models_present=True if forced else None,
            )
            context.log.info(
                "building: a full refresh, or skip_unchanged is off" if forced else decision.reason
            )
            if not (forced or decision.build):
                # No output: the models, the alert evaluation and the publish are skipped.
                return
            if settings.dbt_target == "postgres":
                target = settings.postgres
                copied = load_raw_to_postgres(settings.build_path, target.url, target.raw_schema)
                context.log.info(f"copied raw tables to PostgreSQL: {copied}")
            pruned = prune_command_folders(invocations_folder(project), context.op.name)
            if pruned:
                context.log.info(f"removed the dbt folders of {len(pruned)} earlier build(s)")
            invocation = dbt.cli(command, context=context)
            events: list[Any] = []
            try:
                events.extend(invocation.stream())
            except Exception as exc:
                # A failed build (e.g. an error-severity test) still reports what it did:
                # models built and check results, then the failure.
                yield from events
                starved = out_of_memory_models(_run_results(invocation))
                if starved and settings.dbt_target == "duckdb":
                    message = out_of_memory_message(starved, settings.duckdb_memory_limit)
                    raise dg.Failure(description=message, allow_retries=False) from exc
                raise
            keep_partial_parse(invocation.target_path, project)
            if settings.dbt_target == "duckdb":
                # Counted once dbt has exited: the dbt process holds the DuckDB file while it runs.
                relations = table_relations(project.manifest_path, translator)
                events = with_row_counts(context, events, relations, settings.build_path)
            record_built(settings.state_dir, decision.fingerprint, context.run_id)
            yield from events

    return dg.Definitions(assets=[spend_warehouse_dbt])
