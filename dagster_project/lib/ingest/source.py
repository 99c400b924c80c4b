"""Reading the proxy database: the source session, column discovery, SELECT building, streaming.

Everything a run reads comes from **one** PostgreSQL transaction, ``REPEATABLE READ READ ONLY``:
the watermark cap (the transaction's own clock), the column lists, the chunk plan and the rows
all belong to the same snapshot (airbytehq/airbyte#85918), and the session cannot write. Which
rows a run reads is decided in :mod:`dagster_project.lib.ingest.windows`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest.changes import MARKER_SQL, ChangeMarker, change_marker
from dagster_project.lib.ingest.windows import (
    CREATED_AT,
    LEADING_INDEX_SQL,
    START_TIME,
    Bucket,
    Chunk,
    Window,
    plan_chunks,
)
from dagster_project.lib.sql import quote_ident, snake_case, sql_string, table_name

log = logging.getLogger(__name__)

JSON_TYPES = frozenset({"json", "jsonb"})


@dataclass(frozen=True)
class MetadataField:
    """A ``metadata`` key flattened into a raw column at extract time."""

    path: tuple[str, ...]  # JSON path inside metadata
    # '' instead of NULL when the key is absent, so that NULL marks a row landed before the
    # column existed (dbt staging then reads the key from the row's metadata instead).
    absent_as_empty: bool = False


METADATA_FIELDS: Mapping[str, MetadataField] = {
    "meta_key_alias": MetadataField(("user_api_key_alias",)),
    "meta_team_alias": MetadataField(("user_api_key_team_alias",)),
    "meta_organization_id": MetadataField(("user_api_key_org_id",)),
    "meta_user_email": MetadataField(("user_api_key_user_email",)),
    "meta_error_class": MetadataField(("error_information", "error_class")),
    "meta_error_code": MetadataField(("error_information", "error_code")),
    "meta_project_id": MetadataField(("user_api_key_project_id",), absent_as_empty=True),
}
# metadata keys dropped before landing (about 4 KB per row, ~65 % of the row, no analytic use).
METADATA_DROPPED_KEYS = ("model_map_information",)
PAYLOAD_COLUMNS = frozenset({"messages", "response", "proxy_server_request"})
# The size of the Arrow batches the server streams (ADBC's hint): with the two batches read
# ahead (:func:`prefetch`) they bound the read's memory; 16 MB and three ahead read no faster.
BATCH_HINT_BYTES = 8 * 1024 * 1024

_PG_TYPES: Mapping[pa.DataType, str] = {
    pa.string(): "text",
    pa.float64(): "float8",
    pa.int64(): "int8",
    rc.TS: "timestamp(3)",
}


class SourceSchemaError(RuntimeError):
    """The source lacks a table or column the raw contract requires (terminal, not retried)."""


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


def metadata_field_expression(
    metadata: SourceColumn | None, path: Sequence[str], *, not_null: bool = False
) -> str:
    """The text at ``path`` inside ``metadata`` (NULL when absent or not an object; with
    ``not_null``, '' then). NULL whenever ``metadata`` is not JSON: nothing was looked up."""
    if metadata is None or metadata.data_type not in JSON_TYPES:
        return "NULL::text"
    keys = ",".join(path)
    found = f"{quote_ident(metadata.name)}::jsonb #>> {sql_string('{' + keys + '}')}"
    return f"coalesce({found}, '')" if not_null else f"({found})"


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

    @property
    def bounded_columns(self) -> tuple[str, ...]:
        """The columns whose bounds every lake file records (:attr:`LakeFile.bounds`): the
        day column and the possible cursors, the columns the reconciliation filters on."""
        candidates = (self.partition_column, snake_case(START_TIME), snake_case(CREATED_AT))
        return tuple(c for c in dict.fromkeys(candidates) if c in self.schema.names)


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
        if flattened := METADATA_FIELDS.get(col.name):
            expr = metadata_field_expression(
                metadata, flattened.path, not_null=flattened.absent_as_empty
            )
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
    # tables whose change marker is read before the snapshot (lib/ingest/changes.py)
    watch: Sequence[str] = ()
    markers: dict[str, ChangeMarker] = field(default_factory=dict, init=False)

    def __enter__(self) -> SourceSession:
        self._conn = adbc.connect(self.url)
        if self.watch:
            # In a transaction of their own, ended before the snapshot's: a write the snapshot
            # misses cannot be in the markers either.
            self.markers = {
                name: change_marker(self.query(MARKER_SQL, parameters=(self.table(name),))[0])
                for name in self.watch
            }
            self._conn.rollback()
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
            **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_HINT_BYTES)}
        )
        try:
            cursor.execute(sql)
            reader = cursor.fetch_record_batch()
            yield from reader
        finally:
            cursor.close()


_END = object()


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
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


# Types text_expression passes through whose values PostgreSQL hashes with their own hash
# function (hash_record_extended needs one for every column); any other column is hashed
# through its text form.
HASHABLE_TYPES = frozenset(
    {
        "text",
        "character varying",
        "character",
        "boolean",
        "smallint",
        "integer",
        "bigint",
        "real",
        "double precision",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "bytea",
    }
)


HASH_RECORD_VERSION = 140000  # hash_record_extended: PostgreSQL 14


def snapshot_hash_select(
    session: SourceSession, source: str, columns: Mapping[str, SourceColumn], server_version: int
) -> str:
    """A SELECT of one row: ``count(*)`` and the sum of a 64-bit hash of every landed row.

    The rows are those of :func:`snapshot_select` (secrets excluded: changing one does not
    change the snapshot); a sum is order-free and counts a repeated row twice, so a changed,
    deleted or inserted row changes it (but for a 64-bit hash collision). PostgreSQL computes
    it without sending a row: from PostgreSQL 14 (``server_version``) with
    ``hash_record_extended``, about a microsecond per row, several times cheaper than fetching
    the table into Arrow; before, from the md5 of the row's text (a few times slower).
    """
    landed = snapshot_select(session, source, columns)
    if server_version < HASH_RECORD_VERSION:
        row_hash = "('x' || left(md5(s::text), 16))::bit(64)::bigint"
    else:
        hashed = ", ".join(
            f"{quote_ident(snake_case(col.name))}"
            + ("" if col.data_type in HASHABLE_TYPES else "::text")
            for col in columns.values()
            if col.name not in rc.SECRET_COLUMNS.get(source, frozenset())
        )
        row_hash = f"hash_record_extended(ROW({hashed}), 0)"
    return f"SELECT count(*), coalesce(sum({row_hash}), 0)::text FROM ({landed}) AS s"


@dataclass(frozen=True)
class ContentDigest:
    """A snapshot table's row count and content digest, as PostgreSQL computed them."""

    rows: int
    digest: str


def content_digests(
    session: SourceSession, tables: Mapping[str, Mapping[str, SourceColumn]]
) -> dict[str, ContentDigest]:
    """The :class:`ContentDigest` of every snapshot table in ``tables``, in one query.

    The digest covers the SELECT itself and the source's column types too, so a changed
    column list, type or landing rule reads as a change.
    """
    if not tables:
        return {}
    version = int(session.query("SELECT current_setting('server_version_num')")[0][0])
    selects = {
        source: snapshot_hash_select(session, source, columns, version)
        for source, columns in tables.items()
    }
    sql = " UNION ALL ".join(
        f"SELECT {number} AS n, * FROM ({select}) AS d{number}"
        for number, select in enumerate(selects.values())
    )
    found = {int(n): (int(rows), str(total)) for n, rows, total in session.query(sql)}
    digests = {}
    for number, (source, select) in enumerate(selects.items()):
        rows, total = found[number]
        types = ",".join(c.data_type for c in tables[source].values())
        text = "\x1f".join([select, types, str(rows), total])
        digests[source] = ContentDigest(rows, hashlib.sha256(text.encode()).hexdigest())
    return digests


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
