"""Comparing the lake with the source: per-day reconciliation and freshness.

Reconciliation compares, per UTC day of ``startTime`` over the last few days, the row count,
``sum(spend)`` and a hash of the sorted ``request_id``s of the source with the deduplicated lake.
Only rows the extraction has certainly covered take part: rows whose cursor is below the stored
watermark minus the run's overlap (``created_at`` mode) or look-back (``startTime`` mode); newer
rows are still inside the next run's window and would only cause false alarms.

Freshness is the lag of the lake's watermark behind the source's newest cursor value: a quiet
proxy (no new rows) has no lag, however long ago its last request was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb

from dagster_project.lib.extract import (
    START_TIME,
    FactTable,
    SourceColumn,
    SourceSession,
    cursor_column,
    sql_timestamp,
)
from dagster_project.lib.identifiers import quote_ident, snake_case
from dagster_project.lib.lake import LakeTable
from dagster_project.lib.raw_load import dedup_rule

SPEND_TOLERANCE = 1e-6  # relative, floats summed in a different order


@dataclass(frozen=True)
class DayStat:
    """Row count, spend and id fingerprint of one UTC day."""

    rows: int
    spend: float
    ids_md5: str | None


@dataclass(frozen=True)
class DayMismatch:
    """A day whose source and lake figures differ."""

    day: date
    source: DayStat | None
    lake: DayStat | None

    def describe(self) -> str:
        src = self.source or DayStat(0, 0.0, None)
        lak = self.lake or DayStat(0, 0.0, None)
        return (
            f"{self.day.isoformat()}: source {src.rows} rows / {src.spend:.6f} USD, "
            f"lake {lak.rows} rows / {lak.spend:.6f} USD"
        )


@dataclass(frozen=True)
class ReconcileScope:
    """Which rows are compared: start days from ``first_day``, cursor below ``limit``."""

    first_day: date
    cursor: str  # source column name
    limit: datetime


def reconcile_scope(state: Mapping[str, object], days: int, today: date) -> ReconcileScope | None:
    """The comparable rows given a lake manifest ``state`` (None before the first extraction)."""
    watermark = state.get("watermark")
    cursor = state.get("cursor")
    if not watermark or not cursor:
        return None
    margin = timedelta(seconds=float(state.get("margin_s", 0)))
    limit = datetime.fromisoformat(str(watermark)) - margin
    return ReconcileScope(today - timedelta(days=days - 1), str(cursor), limit)


def source_days(
    session: SourceSession,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    scope: ReconcileScope,
) -> dict[date, DayStat]:
    """Per-day figures of the source table in ``scope`` (inside the session's snapshot)."""
    spend = "sum(spend)" if "spend" in columns else "0.0"
    first = datetime(scope.first_day.year, scope.first_day.month, scope.first_day.day)
    rows = session.query(
        f"SELECT {quote_ident(START_TIME)}::date AS day, count(*) AS n, {spend} AS spend, "
        f"md5(string_agg({fact.key}, ',' ORDER BY {fact.key} COLLATE \"C\")) AS ids "
        f"FROM {session.table(fact.source)} "
        f"WHERE {quote_ident(START_TIME)} >= {sql_timestamp(first)} "
        f"AND {quote_ident(scope.cursor)} < {sql_timestamp(scope.limit)} GROUP BY 1"
    )
    return {day: DayStat(int(n), float(s or 0.0), ids) for day, n, s, ids in rows}


def lake_days(lake: LakeTable, fact: FactTable, scope: ReconcileScope) -> dict[date, DayStat]:
    """Per-day figures of the deduplicated lake in ``scope``."""
    first = scope.first_day.isoformat()
    files = [
        str(lake.absolute(f))
        for f in lake.read_manifest().files
        if f.partition is not None and f.partition >= first
    ]
    if not files:
        return {}
    has_spend = any(c.name == "spend" for c in fact.columns)
    spend = "sum(spend)" if has_spend else "0.0"
    cursor = snake_case(scope.cursor)
    con = duckdb.connect()
    try:
        rows = con.execute(
            "WITH copies AS (SELECT * FROM read_parquet($files, union_by_name = true, "
            "hive_partitioning = false)), "
            f"contested AS (SELECT {fact.key} FROM copies GROUP BY 1 HAVING count(*) > 1), "
            f"winners AS (SELECT * FROM copies WHERE {fact.key} NOT IN (FROM contested) "
            f"UNION ALL SELECT * FROM (SELECT * FROM copies WHERE {fact.key} IN (FROM contested) "
            f"{dedup_rule(fact).qualify()})) "
            f"SELECT CAST(start_time AS DATE) AS day, count(*) AS n, {spend} AS spend, "
            f"md5(string_agg({fact.key}, ',' ORDER BY {fact.key})) AS ids FROM winners "
            f"WHERE start_time >= CAST($first AS DATE) AND {cursor} < $limit GROUP BY 1",
            {"files": files, "first": first, "limit": scope.limit},
        ).fetchall()
    finally:
        con.close()
    return {day: DayStat(int(n), float(s or 0.0), ids) for day, n, s, ids in rows}


def same(a: DayStat | None, b: DayStat | None) -> bool:
    """Whether two day figures agree (spend within a relative float tolerance)."""
    a = a or DayStat(0, 0.0, None)
    b = b or DayStat(0, 0.0, None)
    if a.rows != b.rows or a.ids_md5 != b.ids_md5:
        return False
    return math.isclose(a.spend, b.spend, rel_tol=SPEND_TOLERANCE, abs_tol=SPEND_TOLERANCE)


def compare_days(source: Mapping[date, DayStat], lake: Mapping[date, DayStat]) -> list[DayMismatch]:
    """Days whose figures differ, oldest first."""
    return [
        DayMismatch(day, source.get(day), lake.get(day))
        for day in sorted(set(source) | set(lake))
        if not same(source.get(day), lake.get(day))
    ]


def source_lag(
    session: SourceSession,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    watermark: datetime | None,
    horizon: timedelta,
) -> tuple[datetime | None, timedelta | None]:
    """The source's newest cursor value (up to the session's cap) and the watermark's lag.

    The lag is None when the source has rows but nothing was ever extracted.

    The ``startTime`` bound lets the index limit the scan (``created_at`` has no index).
    """
    cursor = quote_ident(cursor_column(columns))
    where = f"{cursor} < {sql_timestamp(session.cap)}"
    if watermark is not None:
        where += f" AND {quote_ident(START_TIME)} >= {sql_timestamp(watermark - horizon)}"
    newest = session.query(f"SELECT max({cursor}) FROM {session.table(fact.source)} WHERE {where}")
    newest_value = newest[0][0]
    if newest_value is None:
        return None, timedelta(0)
    if watermark is None:
        return newest_value, None
    return newest_value, max(timedelta(0), newest_value - watermark)
