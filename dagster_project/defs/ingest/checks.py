"""Asset checks of the raw fact tables: freshness against the source, per-day reconciliation.

Both are ``blocking``: when either fails, downstream rollups and budget alerts in the same run
do not materialize, so no alert is ever computed from stale or incomplete data. The
reconciliation names the day(s) that differ; the daily rollback job re-reads those days.

Tunables (settings):

- ``SPEND_WAREHOUSE_RECONCILE_DAYS`` (default 3): how many recent UTC days are compared;
- ``SPEND_WAREHOUSE_FRESHNESS_MINUTES`` (default 30): the largest acceptable lag;
- ``SPEND_WAREHOUSE_UNCHANGED_MINUTES`` (default 60, 0: never): how long a passing
  reconciliation stands in for the next ones while neither the source table (PostgreSQL's write
  counts) nor the lake table changed (``lib/ingest/changes.py``).
"""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg

from dagster_project.defs.ingest.assets import classified_errors, raw_key, source_settings
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.ingest.changes import (
    COMPARED,
    ChangeMarker,
    Unchanged,
    forget_record,
    reusable_record,
    save_record,
    unchanged_key,
)
from dagster_project.lib.ingest.lake import Lake, Manifest, PublishedTable
from dagster_project.lib.ingest.reconcile import (
    DayFilter,
    ReconcileScope,
    compare_days,
    compare_history,
    covered_stats,
    lake_days,
    lake_stats,
    reconcile_scope,
    source_days,
    source_lag,
    source_stats,
)
from dagster_project.lib.ingest.source import (
    ERROR_LOGS,
    SPEND_LOGS,
    FactTable,
    SourceSession,
    drift,
)
from dagster_project.lib.ingest.windows import CREATED_AT, WindowOptions, window_floor
from dagster_project.settings import Settings

# Bounds the freshness scan through the startTime index; very late rows are reconciliation's job.
FRESHNESS_HORIZON = timedelta(days=1)
FACTS = (SPEND_LOGS, ERROR_LOGS)


def absent_result(fact: FactTable, prefix: str) -> dg.AssetCheckResult:
    """An absent source table cannot be shown complete or fresh: fail, never report zero."""
    return dg.AssetCheckResult(
        passed=False,
        description=f"source table {prefix}{fact.source} is absent; its data is unknown",
        metadata={"status": "absent"},
    )


def reconcile(fact: FactTable, s: SourceSession, settings: Settings) -> dg.AssetCheckResult:
    """Compare ``fact`` between source and lake (:func:`compare`), or reuse the last passing
    comparison while neither table changed (``lib/ingest/changes.py``)."""
    lake = Lake.from_settings(settings).table(fact.raw_table)
    columns = s.columns(fact.source)
    if columns is None:
        return absent_result(fact, s.prefix)
    manifest = lake.read_manifest()
    scope = reconcile_scope(manifest.state, settings.reconcile_days, s.cap.date())
    marker = s.markers.get(fact.source, ChangeMarker(None, "not read"))
    key = None
    if scope is not None:
        key = unchanged_key(
            marker,
            manifest,
            columns=[f"{c.name} {c.data_type}" for c in columns.values()],
            first_day=scope.first_day,
            days=settings.reconcile_days,
        )
    now = datetime.now(UTC)
    unchanged = Unchanged.from_settings(settings)
    record = reusable_record(unchanged, COMPARED, fact.raw_table, key, now=now)
    if record is not None:
        return dg.AssetCheckResult(
            passed=True,
            description=(
                f"source and lake unchanged since the comparison at {record['at']} "
                "(PostgreSQL's write counts, the lake's manifest): its result stands"
            ),
            metadata={**record["metadata"], "reused": True, "compared_at": record["at"]},
        )
    result = compare(fact, s, settings, lake, manifest, scope)
    compared = {name: value.value for name, value in result.metadata.items()}
    metadata = {
        **compared,
        "reused": False,
        "compared_at": now.isoformat(),
        "reuse": "possible" if key else marker.reason or "nothing extracted yet",
    }
    if result.passed and key is not None:
        save_record(unchanged, COMPARED, fact.raw_table, key, now, compared)
    elif not result.passed:
        forget_record(unchanged, COMPARED, fact.raw_table)
    return dg.AssetCheckResult(
        passed=result.passed, description=result.description, metadata=metadata
    )


def compare(
    fact: FactTable,
    s: SourceSession,
    settings: Settings,
    lake: PublishedTable,
    manifest: Manifest,
    scope: ReconcileScope | None,
) -> dg.AssetCheckResult:
    """Compare ``fact`` between source and lake: the last days in full, older days by ids.

    ``scope`` is the manifest's comparable rows (:func:`reconcile_scope`; None before the first
    extraction).

    The last ``reconcile_days`` days compare count, spend and ids of the rows the extraction has
    surely covered; older days the incremental window still reaches compare the count of those
    rows. The older retained days the window can no longer reach are compared by row count (an
    index-only scan of the source): all of them while the lake holds at most a million rows,
    beyond that one slice of them per run, in turn (:func:`history_slice`, the turn being the
    lake table's version), so a run's cost does not grow with the history and a row inserted
    now with a weeks-old ``startTime`` fails this check, naming its day, within a few runs and
    until the rollback re-reads it (the daily rollback's extraction compares every day).
    Days the source pruned (below its oldest row) are reported as pruned, not as loss.
    """
    days = settings.reconcile_days
    columns = s.columns(fact.source)
    state = manifest.state
    if scope is None:  # nothing extracted yet: fine only if the source is empty too
        has_rows = s.query(f"SELECT EXISTS (SELECT 1 FROM {s.table(fact.source)})")[0][0]
        return dg.AssetCheckResult(
            passed=not has_rows,
            description="nothing extracted yet"
            + (", but the source has rows" if has_rows else "; the source is empty"),
        )
    indexed = scope.cursor == CREATED_AT and s.has_leading_index(fact.source, CREATED_AT)
    if "floor" in state:
        floor = datetime.fromisoformat(state["floor"]) if state["floor"] else None
    else:  # a manifest written before the floor was recorded: the default window
        wm = datetime.fromisoformat(str(state["watermark"]))
        floor = window_floor(scope.cursor, wm, WindowOptions(), bounded=not indexed)
    before = scope.first_day if floor is None else min(scope.first_day, floor.date())
    history = compare_history(
        s,
        lake,
        fact,
        columns,
        before_day=before,
        full=False,
        uncovered=(scope.cursor, scope.limit) if indexed else None,
        turn=manifest.version,
    )
    if history.oldest is None and manifest.rows:
        return disabled_result(fact, s.prefix, lake, history)
    source = source_days(s, fact, columns, scope, history.oldest)
    lake_recent = lake_days(lake, fact, scope, history.oldest)
    # days the incremental window still reaches but the full comparison does not: counts of
    # the rows it has surely covered (a range scan of the startTime index, no per-row hashing;
    # with an index on the cursor, the rows not yet covered are counted through it and
    # subtracted, so the scan never reads the table's rows)
    middle = DayFilter(first_day=before, before_day=scope.first_day, start_from=history.oldest)
    if before >= scope.first_day:
        middle_mismatches = []
    elif indexed:
        uncovered = (scope.cursor, scope.limit)
        middle_mismatches = compare_days(*covered_stats(s, lake, fact, columns, middle, uncovered))
    else:
        covered = replace(middle, cursor=scope.cursor, limit=scope.limit)
        middle_mismatches = compare_days(
            source_stats(s, fact, columns, covered, full=False),
            lake_stats(lake, fact, covered, full=False),
        )
    mismatches = history.mismatches + middle_mismatches + compare_days(source, lake_recent)
    metadata = {
        "status": "present",
        "days_compared": days,
        "first_day": scope.first_day.isoformat(),
        "rows_compared_up_to": scope.limit.isoformat(),
        "source_rows": sum(d.rows for d in source.values()),
        "lake_rows": sum(d.rows for d in lake_recent.values()),
        "mismatched_days": ", ".join(m.day.isoformat() for m in mismatches) or "none",
        "history_days_compared": history.days_compared,
        "history_before": before.isoformat(),
        "history_slice": (
            f"{history.compared[0].isoformat()} to {history.compared[1].isoformat()}"
            if history.compared
            else "all"
        ),
        "source_oldest": history.oldest.isoformat() if history.oldest else None,
        "pruned_days": ", ".join(d.isoformat() for d in history.pruned) or "none",
        "created_at_index": indexed,
    }
    if mismatches:
        return dg.AssetCheckResult(
            passed=False,
            description="source and lake differ on "
            + "; ".join(m.describe() for m in mismatches)
            + " (the rollback job re-reads these days)",
            metadata=metadata,
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


def disabled_result(
    fact: FactTable, prefix: str, lake: PublishedTable, history
) -> dg.AssetCheckResult:
    """The source table is empty while the lake holds history: logging disabled or emptied."""
    rows = lake.read_manifest().rows
    return dg.AssetCheckResult(
        passed=False,
        description=(
            f"source disabled: {prefix}{fact.source} is empty while the lake holds {rows} rows "
            "(disable_spend_logs, or the table was emptied); the history is kept and spend "
            "since then is unknown, not zero"
        ),
        metadata={
            "status": "source_disabled",
            "lake_rows": rows,
            "pruned_days": ", ".join(d.isoformat() for d in history.pruned) or "none",
        },
    )


def freshness(fact: FactTable, s: SourceSession, settings: Settings) -> dg.AssetCheckResult:
    """The lake's watermark must not lag the source's newest row by more than the limit."""
    limit = timedelta(minutes=settings.freshness_minutes)
    lake = Lake.from_settings(settings).table(fact.raw_table)
    state = lake.read_manifest().state
    watermark = datetime.fromisoformat(state["watermark"]) if state.get("watermark") else None
    columns = s.columns(fact.source)
    if columns is None:
        return absent_result(fact, s.prefix)
    newest, lag = source_lag(s, fact, columns, watermark, FRESHNESS_HORIZON)
    metadata = {
        "watermark": watermark.isoformat() if watermark else None,
        "source_newest": newest.isoformat() if newest else None,
        "lag_minutes": round(lag.total_seconds() / 60, 2) if lag is not None else None,
        "limit_minutes": limit.total_seconds() / 60,
    }
    if lag is None:
        return dg.AssetCheckResult(
            passed=False,
            description="the source has rows but none were extracted yet",
            metadata=metadata,
        )
    return dg.AssetCheckResult(
        passed=lag <= limit,
        description=None if lag <= limit else f"the warehouse lags the source by {lag}",
        metadata=metadata,
    )


def schema_drift(fact: FactTable, s: SourceSession, settings: Settings) -> dg.AssetCheckResult:
    """Informational: source columns the raw contract does not land (a proxy upgrade)."""
    columns = s.columns(fact.source)
    extra = drift(fact, columns) if columns is not None else []
    return dg.AssetCheckResult(
        passed=not extra,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"not landed: {', '.join(extra)}" if extra else None,
        metadata={"extra_columns": ", ".join(extra) or "none"},
    )


CHECKS = {"reconciliation": reconcile, "freshness": freshness, "schema_drift": schema_drift}
BLOCKING = {"reconciliation": True, "freshness": True, "schema_drift": False}
DESCRIPTIONS = {
    "reconciliation": "Per UTC day of the last days: source vs lake row count, spend and ids.",
    "freshness": "Lag of the lake's watermark behind the newest source row (quiet = fresh).",
    "schema_drift": "Source columns the raw contract does not know (recorded, not landed).",
}


def check_specs() -> list[dg.AssetCheckSpec]:
    """The checks of both fact tables (a function: the specs must not be autoloaded alone)."""
    return [
        dg.AssetCheckSpec(
            name=name,
            asset=raw_key(fact.raw_table),
            blocking=BLOCKING[name],
            description=DESCRIPTIONS[name],
        )
        for fact in FACTS
        for name in CHECKS
    ]


@dg.multi_asset_check(specs=check_specs(), name="raw_fact_checks")
def raw_fact_checks(settings: SettingsResource) -> Iterator[dg.AssetCheckResult]:
    """Freshness, reconciliation and drift of SpendLogs and ErrorLogs, in one source snapshot."""
    settings = source_settings(settings)
    session = SourceSession(
        settings.database_url, settings.table_prefix, watch=[fact.source for fact in FACTS]
    )
    with classified_errors(), session as s:
        for fact in FACTS:
            for name, check in CHECKS.items():
                result = check(fact, s, settings)
                yield dg.AssetCheckResult(
                    asset_key=raw_key(fact.raw_table),
                    check_name=name,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                )
