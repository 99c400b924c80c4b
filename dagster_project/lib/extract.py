"""Reading the proxy database: column discovery, SELECT building, cursor windows, streaming.

Everything a run reads comes from **one** PostgreSQL transaction, ``REPEATABLE READ READ ONLY``:
the watermark cap (the transaction's own clock), the column lists, the chunk plan and the rows
all belong to the same snapshot (airbytehq/airbyte#85918), and the session cannot write.

Cursor modes (``proxy-db.md`` §3.4), chosen per run from ``information_schema.columns``:

- ``created_at`` (newer proxies): ``created_at >= wm - overlap`` plus a generous
  ``"startTime" >= wm - horizon`` bound so the ``startTime`` index limits the scan;
- ``startTime`` (older proxies): ``"startTime" >= wm - lookback``.

Both read only rows whose cursor is below the cap, so future-dated rows cannot push the watermark
past rows that have not arrived yet. The new watermark is the largest cursor value read (never
the cap, so an empty read leaves it unchanged).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from dagster_project.lib import raw_contract as rc
from dagster_project.lib.identifiers import quote_ident, snake_case, table_name

log = logging.getLogger(__name__)

CREATED_AT = "created_at"
START_TIME = "startTime"
JSON_TYPES = frozenset({"json", "jsonb"})

# metadata keys flattened into columns at extract time: raw column -> JSON path.
METADATA_FIELDS: Mapping[str, tuple[str, ...]] = {
    "meta_key_alias": ("user_api_key_alias",),
    "meta_team_alias": ("user_api_key_team_alias",),
    "meta_organization_id": ("user_api_key_org_id",),
    "meta_user_email": ("user_api_key_user_email",),
    "meta_error_class": ("error_information", "error_class"),
    "meta_error_code": ("error_information", "error_code"),
}
# metadata keys dropped before landing (about 4 KB per row, ~65 % of the row, no analytic use).
METADATA_DROPPED_KEYS = ("model_map_information",)
PAYLOAD_COLUMNS = frozenset({"messages", "response", "proxy_server_request"})

_PG_TYPES: Mapping[pa.DataType, str] = {
    pa.string(): "text",
    pa.float64(): "float8",
    pa.int64(): "int8",
    rc.TS: "timestamp(3)",
}


class SourceSchemaError(RuntimeError):
    """The source lacks a table or column the raw contract requires (terminal, not retried)."""


# ---------------------------------------------------------------------------------------------
# SQL text helpers (pure)
# ---------------------------------------------------------------------------------------------


def sql_timestamp(value: datetime) -> str:
    """A PostgreSQL ``timestamp`` literal with exact microseconds (cursor values round-trip)."""
    if value.tzinfo is not None:
        raise ValueError(f"cursor values are naive UTC, got {value!r}")
    return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='microseconds')}'"


def sql_string(value: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class SourceColumn:
    """One column of a source table as ``information_schema.columns`` reports it."""

    name: str
    data_type: str  # e.g. 'text', 'jsonb', 'ARRAY', 'timestamp without time zone'


def text_expression(column: SourceColumn) -> str:
    """SQL turning ``column`` into a landable value: JSON and arrays as JSON text."""
    ident = quote_ident(column.name)
    if column.data_type in JSON_TYPES:
        return f"{ident}::text"
    if column.data_type == "ARRAY":
        return f"to_jsonb({ident})::text"
    if column.data_type in {"USER-DEFINED", "numeric", "interval", "uuid", "inet"}:
        return f"{ident}::text"
    return ident


def metadata_expression(metadata: SourceColumn | None) -> str:
    """``metadata`` as JSON text without the dropped keys (only objects have keys to drop)."""
    if metadata is None:
        return "NULL::text"
    ident = quote_ident(metadata.name)
    if metadata.data_type != "jsonb":
        return text_expression(metadata)
    dropped = ident + "".join(f" - {sql_string(k)}" for k in METADATA_DROPPED_KEYS)
    return (
        f"CASE WHEN jsonb_typeof({ident}) = 'object' THEN ({dropped})::text ELSE {ident}::text END"
    )


def metadata_field_expression(metadata: SourceColumn | None, path: Sequence[str]) -> str:
    """The text at ``path`` inside ``metadata`` (NULL when absent or not an object)."""
    if metadata is None or metadata.data_type not in JSON_TYPES:
        return "NULL::text"
    keys = ",".join(path)
    return f"({quote_ident(metadata.name)}::jsonb #>> {sql_string('{' + keys + '}')})"


# ---------------------------------------------------------------------------------------------
# Fact tables (SpendLogs, ErrorLogs)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactTable:
    """A source table landed incrementally into a day-partitioned lake table."""

    source: str  # proxy table name without prefix, e.g. "SpendLogs"
    raw_table: str  # e.g. "spend_logs" (also the lake directory)
    columns: tuple[rc.RawColumn, ...]
    key: str = "request_id"
    partition_column: str = "start_time"

    @property
    def schema(self) -> pa.Schema:
        return rc.arrow_schema(self.columns)

    @property
    def contract_sources(self) -> frozenset[str]:
        return frozenset(c.source for c in self.columns if c.source)


SPEND_LOGS = FactTable("SpendLogs", "spend_logs", rc.SPEND_LOG_COLUMNS)
ERROR_LOGS = FactTable("ErrorLogs", "error_logs", rc.ERROR_LOG_COLUMNS)


def fact_select_list(
    fact: FactTable, columns: Mapping[str, SourceColumn], include_payload: bool
) -> list[str]:
    """SELECT expressions producing the raw contract's columns (load metadata excluded).

    Columns missing on older schemas become typed NULLs; payload columns are NULL unless opted
    in; JSON becomes text; ``metadata`` loses its dropped keys and feeds the ``meta_*`` columns.
    """
    metadata = columns.get("metadata")
    exprs = []
    for col in fact.columns:
        if col.name.startswith("_"):
            continue
        null = f"NULL::{_PG_TYPES[col.type]}"
        if col.name in METADATA_FIELDS:
            expr = metadata_field_expression(metadata, METADATA_FIELDS[col.name])
        elif _unavailable(col, columns, include_payload):
            expr = null
        elif col.source == "metadata":
            expr = metadata_expression(metadata)
        else:
            expr = text_expression(columns[col.source])
        exprs.append(f"{expr} AS {quote_ident(col.name)}")
    return exprs


def _unavailable(
    col: rc.RawColumn, columns: Mapping[str, SourceColumn], include_payload: bool
) -> bool:
    """Whether ``col`` lands as NULL: absent from this source, or an opted-out payload."""
    if col.source is None or col.source not in columns:
        return True
    return col.source in PAYLOAD_COLUMNS and not include_payload


def missing_required(fact: FactTable, columns: Mapping[str, SourceColumn]) -> list[str]:
    """Source columns every proxy version has but this source lacks (a terminal error)."""
    required = {fact.key, START_TIME}
    return sorted(required - set(columns))


def drift(fact: FactTable, columns: Mapping[str, SourceColumn]) -> list[str]:
    """Source columns the raw contract does not know (a proxy upgrade): recorded, not landed."""
    return sorted(set(columns) - fact.contract_sources)


def conform_batch(
    batch: pa.RecordBatch, schema: pa.Schema, extracted_at: datetime, batch_id: str
) -> pa.RecordBatch:
    """Cast ``batch`` to the raw contract ``schema`` and fill the load-metadata columns."""
    arrays = []
    for fld in schema:
        if fld.name == "_extracted_at":
            arrays.append(pa.array([extracted_at] * batch.num_rows, type=fld.type))
        elif fld.name == "_batch_id":
            arrays.append(pa.array([batch_id] * batch.num_rows, type=fld.type))
        else:
            column = batch.column(fld.name)
            if column.type != fld.type:
                try:
                    column = column.cast(fld.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SourceSchemaError(
                        f"source column for {fld.name!r} has type {column.type}, which does not "
                        f"convert to {fld.type} ({exc})"
                    ) from exc
            arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


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


# ---------------------------------------------------------------------------------------------
# The source session
# ---------------------------------------------------------------------------------------------


@dataclass
class SourceSession:
    """One read-only, repeatable-read snapshot of the proxy database (ADBC)."""

    url: str
    prefix: str
    batch_rows: int = 65_536
    _conn: Any = field(default=None, init=False, repr=False)
    _catalog: dict[str, dict[str, SourceColumn]] | None = field(
        default=None, init=False, repr=False
    )
    cap: datetime | None = field(default=None, init=False)

    def __enter__(self) -> SourceSession:
        self._conn = adbc.connect(self.url)
        cursor = self._conn.cursor()
        try:
            # The first statement of the transaction fixes its isolation: one snapshot for all.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(
                "SELECT date_trunc('milliseconds', now() AT TIME ZONE 'UTC')::timestamp AS cap"
            )
            self.cap = cursor.fetchone()[0]
        finally:
            cursor.close()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.rollback()  # read-only: nothing to commit
        finally:
            self._conn.close()

    def query(self, sql: str, parameters: Sequence[Any] | None = None) -> list[tuple]:
        """A small control query (catalog look-ups, plans); not wrapped in COPY."""
        cursor = self._conn.cursor()
        cursor.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        try:
            cursor.execute(sql, parameters=parameters)
            return cursor.fetchall()
        finally:
            cursor.close()

    def table(self, name: str) -> str:
        """Quoted reference to proxy table ``name``."""
        return quote_ident(table_name(self.prefix, name))

    def columns(self, name: str) -> dict[str, SourceColumn] | None:
        """Columns of proxy table ``name`` in order, or None when the table does not exist.

        The whole catalog under the prefix is read once per session (one round trip).
        """
        if self._catalog is None:
            rows = self.query(
                "SELECT table_name::text, column_name::text, data_type::text "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND left(table_name, length($1)) = $1 ORDER BY table_name, ordinal_position",
                parameters=(self.prefix,),
            )
            catalog: dict[str, dict[str, SourceColumn]] = {}
            for table, column, data_type in rows:
                catalog.setdefault(table, {})[column] = SourceColumn(column, data_type)
            self._catalog = catalog
        return self._catalog.get(table_name(self.prefix, name))

    def has_leading_index(self, name: str, column: str) -> bool:
        """Whether an index of proxy table ``name`` leads with ``column`` (``pg_index``)."""
        return bool(self.query(LEADING_INDEX_SQL, parameters=(self.table(name), column))[0][0])

    def estimate_rows(self, name: str, window: Window) -> int:
        """The planner's estimate of the rows in ``window`` (no scan)."""
        plan = self.query(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.table(name)} WHERE {window.where()}"
        )[0][0]
        return int(json.loads(plan)[0]["Plan"]["Plan Rows"])

    def plan(self, name: str, window: Window, max_rows: int) -> list[Chunk]:
        """Chunks of ``window``: one when the estimate is small, else an exact hourly plan.

        The exact plan costs a scan of the cursor column, so it is only made for backlogs the
        planner expects to exceed ``max_rows``; chunks bound commits, not memory (reads are
        streamed either way).
        """
        estimate = self.estimate_rows(name, window)
        if estimate <= max_rows:
            return [Chunk(lower=None, upper=window.cap, rows=estimate)]
        return plan_chunks(self.buckets(name, window), window.cap, max_rows)

    def buckets(self, name: str, window: Window) -> list[Bucket]:
        """Hourly row counts of ``window`` (the chunk plan; one scan of the cursor column)."""
        cursor = quote_ident(window.cursor)
        rows = self.query(
            f"SELECT date_trunc('hour', {cursor}) AS bucket, count(*) AS n, max({cursor}) AS mx "
            f"FROM {self.table(name)} WHERE {window.where()} GROUP BY 1 ORDER BY 1"
        )
        return [Bucket(start, int(n), mx) for start, n, mx in rows]

    def fetch_table(self, sql: str) -> pa.Table:
        """Run ``sql`` and return all rows at once (small tables only)."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()
        finally:
            cursor.close()

    def stream(self, sql: str) -> Iterator[pa.RecordBatch]:
        """Run ``sql`` and yield its rows as Arrow record batches (bounded memory)."""
        cursor = self._conn.cursor()
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(16 * 1024 * 1024)}
        )
        try:
            cursor.execute(sql)
            reader = cursor.fetch_record_batch()
            yield from reader
        finally:
            cursor.close()


_END = object()


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 3) -> Iterator[pa.RecordBatch]:
    """Iterate ``batches`` in a background thread, up to ``depth`` batches ahead.

    The database read (ADBC) and the Parquet writing both release the GIL, so overlapping them
    keeps the server streaming while the previous batch is written. Memory stays bounded by
    ``depth`` batches. Errors of the reader are re-raised in the consumer.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except Exception as exc:  # noqa: BLE001 (re-raised by the consumer)
            put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # the cursor is closed on the thread that used it

    worker = threading.Thread(target=produce, name="extract-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def fact_select(
    session: SourceSession,
    fact: FactTable,
    columns: Mapping[str, SourceColumn],
    window: Window,
    include_payload: bool,
) -> str:
    """The streaming SELECT of ``fact`` over ``window``."""
    select = ",\n  ".join(fact_select_list(fact, columns, include_payload))
    return f"SELECT\n  {select}\nFROM {session.table(fact.source)}\nWHERE {window.where()}"


def snapshot_select(
    session: SourceSession, source: str, columns: Mapping[str, SourceColumn]
) -> str:
    """The SELECT of an entity snapshot: every column but secrets, snake_case, JSON as text."""
    secrets = rc.SECRET_COLUMNS.get(source, frozenset())
    exprs = [
        f"{text_expression(col)} AS {quote_ident(snake_case(col.name))}"
        for col in columns.values()
        if col.name not in secrets
    ]
    if not exprs:
        raise SourceSchemaError(f"{table_name(session.prefix, source)} has no landable columns")
    return f"SELECT {', '.join(exprs)} FROM {session.table(source)}"


# ---------------------------------------------------------------------------------------------
# Error classification
# ---------------------------------------------------------------------------------------------

# SQLSTATE classes worth a retry: connection exceptions, transaction rollbacks (serialization,
# deadlock), insufficient resources, operator intervention (admin shutdown, query canceled).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error a retry with back-off may cure.

    Connection failures are transient; a missing table or column, a type error or a bad
    configuration are terminal and retrying them would only hammer the source.
    """
    import adbc_driver_manager
    import psycopg

    if isinstance(exc, SourceSchemaError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return str(sqlstate)[:2] in TRANSIENT_SQLSTATE_CLASSES
    return isinstance(exc, adbc_driver_manager.OperationalError | psycopg.OperationalError)
