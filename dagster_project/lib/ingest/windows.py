"""The watermark and the windows each run reads: where a run starts, where it stops, and what
it records for the next one. Pure functions of the stored state and the source's clock.

Cursor modes (``proxy-db.md`` §3.4), chosen per run from the source's columns:

- ``created_at`` (newer proxies): ``created_at >= wm - overlap`` plus a generous
  ``"startTime" >= wm - horizon`` bound so the ``startTime`` index limits the scan (no bound
  when an index leads with ``created_at``);
- ``startTime`` (older proxies): ``"startTime" >= wm - lookback``.

Both read only rows whose cursor is below the cap, so future-dated rows cannot push the watermark
past rows that have not arrived yet. The new watermark is the largest cursor value read (never
the cap, so an empty read leaves it unchanged)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster_project.lib.ingest.source import SourceColumn

from dagster_project.lib.sql import quote_ident, sql_timestamp, table_name

CREATED_AT = "created_at"
START_TIME = "startTime"


# ---------------------------------------------------------------------------------------------
# Cursor windows and chunks (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowOptions:
    """How far back each run re-reads, and how big a committed chunk may be."""

    overlap: timedelta = timedelta(minutes=5)  # created_at mode
    horizon: timedelta = timedelta(days=7)  # created_at mode: bound on "startTime"
    lookback: timedelta = timedelta(hours=2)  # startTime mode
    chunk_rows: int = 2_000_000


@dataclass(frozen=True)
class Window:
    """The rows one incremental read covers: ``cursor`` in ``[lower, cap)`` plus extra bounds."""

    cursor: str  # source column name
    cap: datetime
    lower: datetime | None = None
    bounds: tuple[str, ...] = ()
    lower_inclusive: bool = True  # False: ``cursor > lower`` (a settled tie at the watermark)

    def where(self) -> str:
        """The SQL predicate of the window."""
        cursor = quote_ident(self.cursor)
        parts = [f"{cursor} < {sql_timestamp(self.cap)}"]
        if self.lower is not None:
            op = ">=" if self.lower_inclusive else ">"
            parts.append(f"{cursor} {op} {sql_timestamp(self.lower)}")
        parts.extend(self.bounds)
        return " AND ".join(parts)


def cursor_column(columns: Mapping[str, SourceColumn]) -> str:
    """``created_at`` when the source has it, else ``startTime``."""
    return CREATED_AT if CREATED_AT in columns else START_TIME


def incremental_window(
    cursor: str,
    watermark: datetime | None,
    cap: datetime,
    options: WindowOptions,
    *,
    bounded: bool = True,
    settled: datetime | None = None,
) -> Window:
    """The window of a normal incremental run (the whole table before the first watermark).

    ``bounded`` (``created_at`` mode without an index leading with ``created_at``) adds the
    ``"startTime" >= watermark - horizon`` bound that lets the ``startTime`` index limit the
    scan; with such an index the window reads every newly inserted row, whatever its
    ``startTime``. ``settled`` is the previous run's snapshot time minus the margin: every row
    whose cursor is below it had committed when that run read. When the watermark is below it,
    the rows at the watermark are complete and are not read again (``cursor > watermark``), so a
    tie of many rows at one ``created_at`` (a bulk copy, the migration instant) or a quiet proxy
    costs nothing per run.
    """
    if watermark is None:
        return Window(cursor=cursor, cap=cap)
    margin = options.overlap if cursor == CREATED_AT else options.lookback
    bounds: tuple[str, ...] = ()
    if cursor == CREATED_AT and bounded:
        bounds = (f"{quote_ident(START_TIME)} >= {sql_timestamp(watermark - options.horizon)}",)
    if settled is not None and watermark < settled:
        return Window(cursor, cap, watermark, bounds, lower_inclusive=False)
    return Window(cursor, cap, watermark - margin, bounds)


def window_floor(
    cursor: str, watermark: datetime | None, options: WindowOptions, *, bounded: bool
) -> datetime | None:
    """The oldest ``startTime`` the next incremental run can still read (None: no limit)."""
    if watermark is None:
        return None
    if cursor == CREATED_AT:
        return watermark - options.horizon if bounded else None
    return watermark - options.lookback


def created_at_index_sql(prefix: str, source: str = "SpendLogs") -> str:
    """The statement a DBA runs once so that created_at mode needs no ``startTime`` bound."""
    table = table_name(prefix, source)
    index = quote_ident(f"{table}_created_at_idx"[:63])
    return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {quote_ident(table)} (created_at);"


# Whether a valid, non-partial index of the table leads with the column (names never matter).
LEADING_INDEX_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = to_regclass($1) AND a.attname = $2 "
    "AND i.indisvalid AND i.indisready AND i.indpred IS NULL)"
)


def day_ranges(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive ``days`` as half-open ranges ``[first, last + 1)``."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges


def rollback_window(cursor: str, cap: datetime, days: int, repair: Sequence[date] = ()) -> Window:
    """The wider re-read of a rollback run: all rows whose UTC start day is in the last ``days``,
    plus every older day in ``repair`` (days the history comparison found different)."""
    start = datetime(cap.year, cap.month, cap.day) - timedelta(days=days - 1)
    column = quote_ident(START_TIME)
    parts = [f"{column} >= {sql_timestamp(start)}"]
    for first, end in day_ranges([d for d in repair if d < start.date()]):
        lo = sql_timestamp(datetime(first.year, first.month, first.day))
        hi = sql_timestamp(datetime(end.year, end.month, end.day))
        parts.append(f"({column} >= {lo} AND {column} < {hi})")
    bound = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    return Window(cursor=cursor, cap=cap, bounds=(bound,))


@dataclass(frozen=True)
class Bucket:
    """Rows of one hour of the cursor (from the planning query)."""

    start: datetime
    rows: int
    max_cursor: datetime


@dataclass(frozen=True)
class Chunk:
    """A committed unit of a (possibly long) read: ``cursor`` in ``[lower, upper)``."""

    lower: datetime | None
    upper: datetime
    rows: int  # planned (exact from the hourly plan, or the planner's estimate)
    max_cursor: datetime | None = None

    def restrict(self, window: Window) -> Window:
        """``window`` narrowed to this chunk."""
        bounds = window.bounds
        if self.lower is not None:
            bounds = (*bounds, f"{quote_ident(window.cursor)} >= {sql_timestamp(self.lower)}")
        return Window(
            window.cursor,
            min(self.upper, window.cap),
            window.lower,
            bounds,
            window.lower_inclusive,
        )


def plan_chunks(buckets: Sequence[Bucket], cap: datetime, max_rows: int) -> list[Chunk]:
    """Group consecutive hour buckets into chunks of at most ``max_rows`` rows.

    A single bucket larger than ``max_rows`` becomes one chunk (it is still streamed in bounded
    batches; only its commit is not split).
    """
    chunks: list[Chunk] = []
    group: list[Bucket] = []

    def close(upper: datetime) -> None:
        lower = chunks[-1].upper if chunks else None
        rows = sum(b.rows for b in group)
        chunks.append(Chunk(lower, upper, rows, max(b.max_cursor for b in group)))
        group.clear()

    for bucket in sorted(buckets, key=lambda b: b.start):
        if group and sum(b.rows for b in group) + bucket.rows > max_rows:
            close(bucket.start)
        group.append(bucket)
    if group:
        close(cap)
    return chunks


def parse_ts(value: str | None) -> datetime | None:
    """A stored ISO timestamp (naive UTC), or None."""
    return datetime.fromisoformat(value) if value else None


def window_state(state: Mapping[str, Any]) -> tuple:
    """The part of a lake ``state`` that decides the next run's window."""
    watermark, settled = parse_ts(state.get("watermark")), parse_ts(state.get("settled"))
    at_rest = watermark is not None and settled is not None and watermark < settled
    return (
        state.get("cursor"),
        state.get("watermark"),
        state.get("margin_s"),
        state.get("floor"),
        at_rest,
    )


def next_state(
    state: Mapping[str, Any],
    cursor: str,
    watermark: datetime,
    cap: datetime,
    chunk_upper: datetime,
    options: WindowOptions,
    *,
    bounded: bool,
) -> dict[str, Any]:
    """The lake state published with a committed chunk: the next run's window starts here."""
    margin = options.overlap if cursor == CREATED_AT else options.lookback
    floor = window_floor(cursor, watermark, options, bounded=bounded)
    return {
        **state,
        "cursor": cursor,
        "watermark": watermark.isoformat(),
        "margin_s": margin.total_seconds(),
        # every row whose cursor is below this had committed when this run read
        "settled": min(cap - margin, chunk_upper).isoformat(),
        # the oldest startTime the next run reads (None: every new row, whatever its age)
        "floor": floor.isoformat() if floor else None,
    }
