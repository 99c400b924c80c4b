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
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from dagster_project.lib.duckdb import scratch
from dagster_project.lib.ingest.lake import LakeFile, PublishedTable
from dagster_project.lib.ingest.load import dedup_rule
from dagster_project.lib.ingest.source import FactTable, SourceColumn, SourceSession
from dagster_project.lib.ingest.windows import START_TIME, cursor_column
from dagster_project.lib.sql import quote_ident, snake_case, sql_timestamp

SPEND_TOLERANCE = 1e-6  # relative, floats summed in a different order


@dataclass(frozen=True)
class DayStat:
    """Row count, spend and id fingerprint of one UTC day."""

    rows: int
    spend: float
    ids_md5: str | None  # sum of the first 60 bits of md5(request_id): order-free, exact


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


@dataclass(frozen=True)
class DayFilter:
    """Rows taking part in a per-day comparison (every bound optional).

    ``first_day <= start day < before_day``, ``startTime >= start_from`` (the source's retention
    horizon: its oldest row) and ``cursor < limit`` (rows the extraction has surely covered).
    """

    first_day: date | None = None
    before_day: date | None = None
    start_from: datetime | None = None
    cursor: str | None = None
    limit: datetime | None = None
    since: datetime | None = None  # ``cursor >= since`` (the rows not surely covered yet)


def reconcile_scope(state: Mapping[str, object], days: int, today: date) -> ReconcileScope | None:
    """The comparable rows given a lake manifest ``state`` (None before the first extraction)."""
    watermark = state.get("watermark")
    cursor = state.get("cursor")
    if not watermark or not cursor:
        return None
    margin = timedelta(seconds=float(state.get("margin_s", 0)))
    limit = datetime.fromisoformat(str(watermark)) - margin
    return ReconcileScope(today - timedelta(days=days - 1), str(cursor), limit)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def pg_fingerprint(key: str) -> str:
    """PostgreSQL: the order-free id fingerprint of a group (needs no sort, exact integer)."""
    return f"sum(('x' || substr(md5({quote_ident(key)}), 1, 15))::bit(60)::bigint)"


def duckdb_fingerprint(key: str) -> str:
    """DuckDB: the same fingerprint as :func:`pg_fingerprint`."""
    return f"sum(('0x' || substr(md5({key}), 1, 15))::BIGINT)"


def _stats(rows) -> dict[date, DayStat]:
    return {
        day: DayStat(int(n), float(s or 0.0), None if fp is None else str(int(fp)))
        for day, n, s, fp in rows
    }


def source_stats(
    session: SourceSession,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    where: DayFilter,
    *,
    full: bool = True,
) -> dict[date, DayStat]:
    """Per-day figures of the source table (inside the session's snapshot).

    ``full``: count, spend and id fingerprint. Otherwise the count only: without ``cursor`` that
    query reads nothing but the ``startTime`` index (an index-only scan, no heap, no per-row
    hashing), cheap enough for every run over the whole retained history; over a bounded range
    of days, with that index, it counts each day by its own index range (:func:`_day_counts`),
    which spares a hash aggregate keyed by the day of every row (about half the time).
    """
    start = quote_ident(START_TIME)
    total = "sum(spend)" if full and "spend" in columns else "0.0"
    fingerprint = pg_fingerprint(fact.key) if full else "NULL"
    first = where.first_day or (where.start_from.date() if where.start_from else None)
    if (
        not full
        and where.cursor is None
        and first is not None
        and where.before_day is not None
        and session.has_leading_index(fact.source, START_TIME)
    ):
        return _day_counts(session, fact, first, where.before_day, where.start_from)
    parts = ["TRUE"]
    if where.first_day is not None:
        parts.append(f"{start} >= {sql_timestamp(_midnight(where.first_day))}")
    if where.before_day is not None:
        parts.append(f"{start} < {sql_timestamp(_midnight(where.before_day))}")
    if where.start_from is not None:
        parts.append(f"{start} >= {sql_timestamp(where.start_from)}")
    if where.cursor is not None and where.limit is not None:
        parts.append(f"{quote_ident(where.cursor)} < {sql_timestamp(where.limit)}")
    if where.cursor is not None and where.since is not None:
        parts.append(f"{quote_ident(where.cursor)} >= {sql_timestamp(where.since)}")
    rows = session.query(
        f"SELECT {start}::date AS day, count(*) AS n, {total} AS spend, "
        f"{fingerprint} AS ids FROM {session.table(fact.source)} "
        f"WHERE {' AND '.join(parts)} GROUP BY 1"
    )
    return _stats(rows)


def _day_counts(
    session: SourceSession,
    fact: FactTable,
    first_day: date,
    before_day: date,
    start_from: datetime | None,
) -> dict[date, DayStat]:
    """Rows per day from ``first_day`` to ``before_day`` (excluded) with ``startTime`` at or
    after ``start_from``: one index-only range count per day."""
    start = quote_ident(START_TIME)
    lower = "d" if start_from is None else f"greatest(d, {sql_timestamp(start_from)})"
    rows = session.query(
        f"SELECT d::date AS day, c.n, 0.0 AS spend, NULL AS ids "
        f"FROM generate_series({sql_timestamp(_midnight(first_day))}, "
        f"{sql_timestamp(_midnight(before_day))} - interval '1 day', interval '1 day') AS d, "
        f"LATERAL (SELECT count(*) AS n FROM {session.table(fact.source)} "
        f"WHERE {start} >= {lower} AND {start} < d + interval '1 day') AS c WHERE c.n > 0"
    )
    return _stats(rows)


def source_days(
    session: SourceSession,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    scope: ReconcileScope,
    start_from: datetime | None = None,
) -> dict[date, DayStat]:
    """Per-day figures of the source table in ``scope`` (inside the session's snapshot)."""
    where = DayFilter(
        first_day=scope.first_day, start_from=start_from, cursor=scope.cursor, limit=scope.limit
    )
    return source_stats(session, fact, columns, where)


def source_oldest(session: SourceSession, fact: FactTable) -> datetime | None:
    """The oldest ``startTime`` the source still holds (its retention horizon; index look-up)."""
    start = quote_ident(START_TIME)
    return session.query(f"SELECT min({start}) FROM {session.table(fact.source)}")[0][0]


def lake_stats(
    lake: PublishedTable, fact: FactTable, where: DayFilter, *, full: bool = True
) -> dict[date, DayStat]:
    """Per-day figures of the deduplicated lake (same filter semantics as :func:`source_stats`).

    Counting only, a day held by one file whose every row passes the filter is counted from the
    manifest (one extraction read each key once; compaction leaves one deduplicated file): the
    file's recorded bounds (:attr:`LakeFile.bounds`) show that every row starts at or after
    ``start_from`` and has its cursor below ``limit``. So only days with several files, the
    partly pruned oldest day and files holding rows at or after ``limit`` (the newest) are
    read, however long the history.
    """
    selected = [
        f
        for f in lake.read_manifest().files
        if f.partition is not None
        and (where.first_day is None or f.partition >= where.first_day.isoformat())
        and (where.before_day is None or f.partition < where.before_day.isoformat())
        # a day before start_from's holds no row at or after it (the days the source pruned)
        and (where.start_from is None or f.partition >= where.start_from.date().isoformat())
    ]
    counted: dict[date, DayStat] = {}
    if not full:
        per_day: dict[str, list[LakeFile]] = {}
        for f in selected:
            per_day.setdefault(f.partition, []).append(f)
        for day, day_files in per_day.items():
            if len(day_files) == 1 and day_files[0].rows and _passes(day_files[0], where):
                counted[date.fromisoformat(day)] = DayStat(day_files[0].rows, 0.0, None)
        selected = [f for f in selected if date.fromisoformat(f.partition) not in counted]
    files = [str(lake.absolute(f)) for f in selected]
    if not files:
        return counted
    has_spend = full and any(c.name == "spend" for c in fact.columns)
    total = "sum(spend)" if has_spend else "0.0"
    parts = ["TRUE"]
    params: dict[str, object] = {"files": files}
    if where.first_day is not None:
        parts.append("start_time >= $first")
        params["first"] = _midnight(where.first_day)
    if where.before_day is not None:
        parts.append("start_time < $before")
        params["before"] = _midnight(where.before_day)
    if where.start_from is not None:
        parts.append("start_time >= $start_from")
        params["start_from"] = where.start_from
    if where.cursor is not None and where.limit is not None:
        parts.append(f"{snake_case(where.cursor)} < $limit")
        params["limit"] = where.limit
    fingerprint = duckdb_fingerprint(fact.key) if full else "NULL"
    narrow = ", ".join(
        dict.fromkeys(
            [fact.key, "start_time"]
            + (["spend"] if has_spend else [])
            + ([snake_case(where.cursor)] if where.cursor is not None else [])
        )
    )
    source = "read_parquet($files, union_by_name = true, hive_partitioning = false)"
    with scratch() as con:
        # only the compared columns are read, except for keys stored more than once, whose
        # winner the dedup rule picks from whole rows
        rows = con.execute(
            f"WITH copies AS (SELECT {narrow} FROM {source}), "
            f"contested AS (SELECT {fact.key} FROM copies GROUP BY 1 HAVING count(*) > 1), "
            f"winners AS (SELECT * FROM copies ANTI JOIN contested USING ({fact.key}) "
            f"UNION ALL SELECT {narrow} FROM (SELECT * FROM {source} "
            f"SEMI JOIN contested USING ({fact.key}) {dedup_rule(fact).qualify()})) "
            f"SELECT CAST(start_time AS DATE) AS day, count(*) AS n, {total} AS spend, "
            f"{fingerprint} AS ids FROM winners "
            f"WHERE {' AND '.join(parts)} GROUP BY 1",
            params,
        ).fetchall()
    return {**counted, **_stats(rows)}


def _passes(file: LakeFile, where: DayFilter) -> bool:
    """Whether every row of ``file`` passes the row bounds of ``where`` (its day passes):
    known from its partition or its recorded bounds; unknown bounds mean no."""
    if where.start_from is not None and file.partition <= where.start_from.date().isoformat():
        lowest = file.lower("start_time")
        if lowest is None or lowest < where.start_from:
            return False
    if where.cursor is not None and where.limit is not None:
        highest = file.upper(snake_case(where.cursor))
        if highest is None or highest >= where.limit:
            return False
    return True


def lake_days(
    lake: PublishedTable, fact: FactTable, scope: ReconcileScope, start_from: datetime | None = None
) -> dict[date, DayStat]:
    """Per-day figures of the deduplicated lake in ``scope``."""
    where = DayFilter(
        first_day=scope.first_day, start_from=start_from, cursor=scope.cursor, limit=scope.limit
    )
    return lake_stats(lake, fact, where)


def lake_days_before(lake: PublishedTable, before: date) -> list[date]:
    """Days the lake holds rows for, below ``before`` (e.g. pruned at the source)."""
    return sorted(
        {
            date.fromisoformat(f.partition)
            for f in lake.read_manifest().files
            if f.partition is not None and f.partition < before.isoformat() and f.rows
        }
    )


@dataclass(frozen=True)
class History:
    """A per-day comparison of the retained history: what differs, what the source pruned."""

    mismatches: list[DayMismatch]
    pruned: list[date]  # lake days wholly below the source's oldest row (retention)
    oldest: datetime | None  # the source's oldest startTime (None: the source is empty)
    source_rows: int
    lake_rows: int
    days_compared: int
    compared: tuple[date, date] | None = None  # [first, before) when only a slice was


# How many source rows one reconciliation compares by count, at most (about 0.3 s of the
# startTime index on 2 cores): a longer history is compared one slice per run.
HISTORY_ROWS_PER_RUN = 1_000_000


def history_slice(
    oldest: date,
    before: date,
    history_rows: int,
    turn: int,
    rows_per_run: int | None = None,
) -> tuple[date, date]:
    """The days ``[first, before)`` of the retained history ``[oldest, before)`` one
    reconciliation compares: all of it while it holds at most ``rows_per_run`` rows; beyond,
    the history is cut into ``ceil(history_rows / rows_per_run)`` contiguous slices of equal
    length in days and run number ``turn`` compares slice ``turn`` modulo their number, so
    consecutive runs cover every day and no run's cost grows with the history."""
    days = (before - oldest).days
    per_run = rows_per_run or HISTORY_ROWS_PER_RUN
    slices = min(max(days, 1), max(1, -(-history_rows // per_run)))
    if slices == 1:
        return oldest, before
    width = -(-days // slices)
    slices = -(-days // width)  # e.g. 7 days in 6 slices: 2 days wide, so 4 slices
    first = oldest + timedelta(days=(turn % slices) * width)
    return first, min(before, first + timedelta(days=width))


def _minus(a: DayStat, b: DayStat | None) -> DayStat | None:
    if b is None:
        return a
    rows = a.rows - b.rows
    if not rows:
        return None
    ids = None if a.ids_md5 is None or b.ids_md5 is None else str(int(a.ids_md5) - int(b.ids_md5))
    return DayStat(rows, a.spend - b.spend, ids)


def covered_stats(
    session: SourceSession,
    lake: PublishedTable,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    where: DayFilter,
    uncovered: tuple[str, datetime] | None,
    *,
    full: bool = False,
) -> tuple[dict[date, DayStat], dict[date, DayStat]]:
    """Per-day figures of the rows in ``where`` on both sides, leaving out with
    ``uncovered = (cursor, limit)`` the rows whose cursor is at or after ``limit`` (the next run
    reads them anyway): the source's are counted through the cursor's index and subtracted from
    the day's figures, so the scan of the days stays on the ``startTime`` index."""
    source = source_stats(session, fact, columns, where, full=full)
    if uncovered is None:
        return source, lake_stats(lake, fact, where, full=full)
    cursor, limit = uncovered
    late = source_stats(
        session, fact, columns, replace(where, cursor=cursor, since=limit), full=full
    )
    source = {
        day: diff
        for day, stat in source.items()
        if (diff := _minus(stat, late.get(day))) is not None
    }
    return source, lake_stats(lake, fact, replace(where, cursor=cursor, limit=limit), full=full)


def compare_history(
    session: SourceSession,
    lake: PublishedTable,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    *,
    before_day: date | None = None,
    full: bool = True,
    uncovered: tuple[str, datetime] | None = None,
    turn: int | None = None,
) -> History:
    """Compare every retained day (below ``before_day``) of the source with the lake.

    With ``turn`` (and a ``before_day``), only the slice :func:`history_slice` picks for that
    run number is compared, the history's size taken from the lake's manifest; without, every
    day (the daily rollback's extraction, which re-reads the days that differ).

    Days below the source's oldest ``startTime`` are pruned (retention), never loss: they are
    listed, not compared, and the oldest, partly pruned day is compared from that instant on.
    ``full=False`` compares counts only (an index-only scan of the source). With
    ``uncovered = (cursor, limit)`` rows whose cursor is at or after ``limit`` (the next run
    reads them anyway) are left out on both sides; the source's are counted through the
    cursor's index and subtracted, so the scan stays index-only.
    """
    oldest = source_oldest(session, fact)
    if oldest is None:
        before = before_day or date.max
        return History([], lake_days_before(lake, before), None, 0, 0, 0)
    pruned = lake_days_before(lake, oldest.date())
    first_day, compared = None, None
    if turn is not None and before_day is not None and oldest.date() < before_day:
        whole = (oldest.date(), before_day)
        first_day, before_day = history_slice(*whole, lake.read_manifest().rows, turn)
        compared = None if (first_day, before_day) == whole else (first_day, before_day)
    where = DayFilter(first_day=first_day, before_day=before_day, start_from=oldest)
    source, lake_figures = covered_stats(session, lake, fact, columns, where, uncovered, full=full)
    return History(
        mismatches=compare_days(source, lake_figures),
        pruned=pruned,
        oldest=oldest,
        source_rows=sum(d.rows for d in source.values()),
        lake_rows=sum(d.rows for d in lake_figures.values()),
        days_compared=len(set(source) | set(lake_figures)),
        compared=compared,
    )


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
