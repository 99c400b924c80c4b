"""Raw layer assets: SpendLogs, ErrorLogs and the entity snapshots, landed in lake and DuckDB.

Asset keys are ``raw/<raw table>``, the names dbt sources map to. Every asset writes the build
DuckDB, so they share the ``spend_warehouse_writer`` pool (limit it to 1 in ``dagster.yaml``)
on top of the cross-process file lock of :func:`dagster_project.lib.duckdb.connect_writer`.

Retries: connection-level database errors are retried with exponential back-off; a missing table
or column, or a bad configuration, fails at once (``dg.Failure(allow_retries=False)``).
"""

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg

from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.duckdb import WRITER_POOL, connect_writer
from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest.changes import Unchanged
from dagster_project.lib.ingest.extract import FactResult, extract_fact, extract_snapshots
from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.limit_history import HISTORY_TABLE, record_limit_history
from dagster_project.lib.ingest.source import (
    ERROR_LOGS,
    SPEND_LOGS,
    FactTable,
    SourceSession,
    is_transient,
)
from dagster_project.lib.ingest.windows import WindowOptions
from dagster_project.lib.times import utcnow
from dagster_project.settings import ConfigError, Settings

RAW_GROUP = "raw"
KINDS = {"postgres", "parquet", "duckdb"}
DB_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def raw_key(raw_table: str) -> dg.AssetKey:
    """The asset key of a raw table: ``raw/<raw_table>``."""
    return dg.AssetKey([rc.RAW_SCHEMA, raw_table])


class ExtractConfig(dg.Config):
    """Run configuration of the fact extraction (defaults suit a 15-minute schedule)."""

    rollback_days: int = 0
    """Also re-read every row whose UTC start day is in the last N days (repairs late rows that
    reconciliation found; the daily rollback schedule sets it). 0 = normal incremental run."""
    maintenance: bool = False
    """Also compact every day partition of the lake holding more than one file and expire the
    lake's old snapshots (Iceberg); the daily rollback schedule sets it."""
    overlap_minutes: int = 5
    """created_at mode: re-read this much before the watermark (transactions still in flight)."""
    horizon_days: int = 7
    """created_at mode: ignore rows whose startTime is older than this before the watermark."""
    lookback_minutes: int = 120
    """startTime mode (older proxies): re-read this much before the watermark (late batches)."""
    chunk_rows: int = 2_000_000
    """Commit a long backlog in chunks of about this many rows."""

    def window_options(self) -> WindowOptions:
        return WindowOptions(
            overlap=timedelta(minutes=self.overlap_minutes),
            horizon=timedelta(days=self.horizon_days),
            lookback=timedelta(minutes=self.lookback_minutes),
            chunk_rows=self.chunk_rows,
        )


def source_settings(resource: SettingsResource) -> Settings:
    """The run's settings with a source: ``DATABASE_URL``, else the demo proxy if one exists.

    Without either, a terminal failure naming the fix.
    """
    from dagster_project.lib.demo import no_source_message, resolve_source

    try:
        settings = resolve_source(resource.get())
    except ConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    if settings.database_url is None:
        raise dg.Failure(description=no_source_message(settings), allow_retries=False)
    return settings


@contextlib.contextmanager
def classified_errors() -> Iterator[None]:
    """Turn terminal errors into non-retryable failures; let transient ones reach the retry."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def fact_materialization(result: FactResult) -> dg.MaterializeResult:
    """Asset metadata of one fact extraction."""
    metadata: dict[str, object] = dict(result.metadata())
    metadata["dagster/row_count"] = result.rows_in_warehouse
    return dg.MaterializeResult(metadata=metadata)


def run_fact(
    context: dg.AssetExecutionContext,
    config: ExtractConfig,
    settings: SettingsResource,
    fact: FactTable,
) -> dg.MaterializeResult:
    """Extract one fact table into the lake and ``raw.<table>``."""
    settings = source_settings(settings)
    with (
        classified_errors(),
        SourceSession(settings.database_url, settings.table_prefix, watch=[fact.source]) as session,
        connect_writer(
            settings.build_path, recover_corrupt=True, limits=settings.duckdb_config
        ) as con,
    ):
        result = extract_fact(
            session,
            con,
            Lake.from_settings(settings),
            fact,
            options=config.window_options(),
            include_payload=settings.include_payload_columns,
            rollback_days=config.rollback_days,
            maintenance=config.maintenance,
            unchanged=Unchanged.from_settings(settings),
            progress=context.log.info,
        )
    context.log.info(
        f"{fact.raw_table}: read {result.rows_read}, stored {result.rows_stored}, "
        f"{result.rows_in_warehouse} in warehouse, watermark {result.watermark_after}"
    )
    return fact_materialization(result)


def fact_asset(fact: FactTable) -> dg.AssetsDefinition:
    """The raw asset of one fact table, extracted incrementally by :func:`run_fact`."""

    @dg.asset(
        key=raw_key(fact.raw_table),
        group_name=RAW_GROUP,
        kinds=KINDS,
        pool=WRITER_POOL,
        retry_policy=DB_RETRY,
        description=(
            f"One row per {fact.key} from the proxy's {fact.source} "
            f"({rc.RAW_SCHEMA}.{fact.raw_table})."
        ),
    )
    def raw_fact(
        context: dg.AssetExecutionContext, config: ExtractConfig, settings: SettingsResource
    ) -> dg.MaterializeResult:
        return run_fact(context, config, settings, fact)

    return raw_fact


raw_spend_logs = fact_asset(SPEND_LOGS)
raw_error_logs = fact_asset(ERROR_LOGS)


def snapshot_specs() -> list[dg.AssetSpec]:
    """One asset per entity snapshot table, plus the history of their budget limits (a function:
    the autoloader must not see them)."""
    return [
        *(
            dg.AssetSpec(
                key=raw_key(raw_table),
                group_name=RAW_GROUP,
                kinds=KINDS,
                description=f"Latest snapshot of the proxy's {source} (raw.{raw_table}).",
            )
            for source, raw_table in rc.SNAPSHOT_TABLES.items()
        ),
        dg.AssetSpec(
            key=raw_key(HISTORY_TABLE),
            group_name=RAW_GROUP,
            kinds=KINDS,
            description=(
                "Every version of every budget-bearing row's limits, appended when a snapshot "
                f"shows a change or a deletion (raw.{HISTORY_TABLE})."
            ),
        ),
    ]


@dg.multi_asset(
    name="raw_snapshots",
    specs=snapshot_specs(),
    pool=WRITER_POOL,
    retry_policy=DB_RETRY,
    can_subset=False,
)
def raw_snapshots(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> Iterator[dg.MaterializeResult]:
    """Snapshot every entity and budget table; absent optional tables are recorded as absent.

    Every snapshot asset materializes each run, its metadata saying whether it ``changed``,
    even when nothing was fetched (the content digest was unchanged). They are not
    ``skippable``: in ``spend_warehouse_job`` Dagster skips a step when an upstream output in
    the same run is not emitted, so one unchanged snapshot would skip the whole dbt build
    while spend logs changed. Whether anything changed for dbt is decided from the lake's
    files instead (``lib/dbt/build_inputs.py``).
    """
    settings = source_settings(settings)
    with (
        classified_errors(),
        SourceSession(settings.database_url, settings.table_prefix) as session,
        connect_writer(
            settings.build_path, recover_corrupt=True, limits=settings.duckdb_config
        ) as con,
    ):
        lake = Lake.from_settings(settings)
        results = extract_snapshots(session, con, lake, progress=context.log.info)
        history = record_limit_history(con, lake, utcnow())
    changed = sum(r.changed for r in results)
    absent = [r.source for r in results if r.status == "absent"]
    context.log.info(
        f"snapshots: {len(results) - len(absent)} present ({changed} changed), "
        f"absent: {', '.join(absent) or 'none'}"
    )
    for r in results:
        yield dg.MaterializeResult(
            asset_key=raw_key(r.raw_table),
            metadata={
                "status": r.status,
                "changed": r.changed,
                "dagster/row_count": r.rows,
            },
        )
    context.log.info(
        f"budget limit history: {history.versions} new version(s) "
        f"({history.tombstones} deletion(s)), {history.rows} in all"
    )
    yield dg.MaterializeResult(
        asset_key=raw_key(HISTORY_TABLE),
        metadata={
            "new_versions": history.versions,
            "deletions": history.tombstones,
            "dagster/row_count": history.rows,
        },
    )
