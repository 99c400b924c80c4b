"""The ``raw`` schema of the build DuckDB: a rebuildable cache of the Parquet lake.

- Fact tables (``raw.spend_logs``, ``raw.error_logs``) hold exactly one row per ``request_id``:
  each lake file is merged once (``raw._lake_files`` records which), keeping the deterministic
  winner of :data:`raw_contract.DEDUP_ORDER` among the stored row and the new copies. Merging is
  idempotent, so merging a file twice (after a crash, or a compacted file) changes nothing.
- Snapshot tables are replaced by their latest lake file.
- ``raw._source_tables`` records, per source table, whether it was present or absent in the last
  run (an absent optional table is "unknown", never "no spend").

If the build database is lost or corrupt it is recreated empty and :func:`sync_fact` re-merges
every live lake file: the result is identical, because the lake is the source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest.lake import DedupRule, LakeFile, PublishedTable, pause_point
from dagster_project.lib.ingest.source import FactTable
from dagster_project.lib.times import utcnow

LOADED_FILES = f"{rc.RAW_SCHEMA}._lake_files"
STORED_DAY = "_stored_day"  # filter_changed: the day of the stored version a row supersedes
SOURCE_TABLES = f"{rc.RAW_SCHEMA}._source_tables"

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    rc.TS: "TIMESTAMP",
}


def qualified(raw_table: str) -> str:
    """``raw."<table>"``."""
    return f'{rc.RAW_SCHEMA}."{raw_table}"'


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``raw`` schema and the bookkeeping tables if missing."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {rc.RAW_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {LOADED_FILES} ("
        "lake_table VARCHAR NOT NULL, path VARCHAR NOT NULL, loaded_at TIMESTAMP NOT NULL, "
        "PRIMARY KEY (lake_table, path))"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {SOURCE_TABLES} ("
        "source_table VARCHAR PRIMARY KEY, raw_table VARCHAR NOT NULL, status VARCHAR NOT NULL, "
        "row_count BIGINT, detail VARCHAR, checked_at TIMESTAMP NOT NULL)"
    )


def table_exists(con: duckdb.DuckDBPyConnection, raw_table: str) -> bool:
    """Whether the table ``raw.<raw_table>`` exists (``duckdb_tables()``: a snapshot asset asks
    for each table every run, and ``information_schema`` costs twice as much)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [rc.RAW_SCHEMA, raw_table],
    ).fetchall()[0]
    return bool(row[0])


def ensure_fact_table(con: duckdb.DuckDBPyConnection, fact: FactTable) -> None:
    """Create ``raw.<fact>`` from the contract; add contract columns an older copy lacks."""
    ensure_schema(con)
    cols = ", ".join(f'"{c.name}" {_DUCKDB_TYPES[c.type]}' for c in fact.columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS {qualified(fact.raw_table)} ({cols})")
    existing = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [rc.RAW_SCHEMA, fact.raw_table],
        ).fetchall()
    }
    for c in fact.columns:
        if c.name not in existing:
            con.execute(
                f'ALTER TABLE {qualified(fact.raw_table)} ADD COLUMN "{c.name}" '
                f"{_DUCKDB_TYPES[c.type]}"
            )


def content_sql(columns: Sequence[str], alias: str | None = None) -> str:
    """A DuckDB expression: the named columns packed in one struct (compared as a whole)."""
    prefix = f"{alias}." if alias else ""
    fields = ", ".join(f'"{c}" := {prefix}"{c}"' for c in columns)
    return f"struct_pack({fields})"


def content_hash_sql(columns: Sequence[str], alias: str | None = None) -> str:
    """A DuckDB expression: md5 of the named columns (an unambiguous JSON rendering), stable
    across runs and DuckDB versions (the deterministic winner's tie-break)."""
    return f"md5(to_json({content_sql(columns, alias)}))"


def dedup_rule(fact: FactTable) -> DedupRule:
    """The deterministic-winner rule of ``fact``."""
    hashed = content_hash_sql(rc.content_columns(fact.columns))
    return DedupRule(fact.key, rc.DEDUP_ORDER[fact.raw_table].format(content_hash=hashed))


def loaded_paths(con: duckdb.DuckDBPyConnection, lake: PublishedTable) -> set[str]:
    """Lake paths of ``lake`` already merged into DuckDB."""
    rows = con.execute(
        f"SELECT path FROM {LOADED_FILES} WHERE lake_table = ?", [lake.name]
    ).fetchall()
    return {r[0] for r in rows}


def merge_files(
    con: duckdb.DuckDBPyConnection, fact: FactTable, lake: PublishedTable, files: Sequence[LakeFile]
) -> int:
    """Merge lake ``files`` into ``raw.<fact>`` in one transaction; return the rows merged.

    Only *contested* keys (stored already, or present more than once in ``files``) go through
    the deterministic-winner ordering; every other row is appended as it streams from Parquet,
    so a large first load costs one scan and little memory.
    """
    if not files:
        return 0
    target = qualified(fact.raw_table)
    key = fact.key
    incoming = "read_parquet($paths, union_by_name = true, hive_partitioning = false)"
    params = {"paths": [str(lake.absolute(f)) for f in files]}
    rule = dedup_rule(fact)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _contested AS "
            f"SELECT {key} FROM {incoming} GROUP BY {key} HAVING count(*) > 1 "
            f"UNION SELECT t.{key} FROM {target} AS t SEMI JOIN {incoming} AS i "
            f"ON t.{key} = i.{key}",
            params,
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _winners AS SELECT * FROM ("
            f"SELECT * FROM {incoming} WHERE {key} IN (SELECT {key} FROM _contested) "
            f"UNION ALL BY NAME SELECT * FROM {target} "
            f"WHERE {key} IN (SELECT {key} FROM _contested)) {rule.qualify()}",
            params,
        )
        con.execute(f"DELETE FROM {target} WHERE {key} IN (SELECT {key} FROM _contested)")
        pause_point("mid_merge")
        con.execute(
            f"INSERT INTO {target} BY NAME SELECT * FROM {incoming} "
            f"WHERE {key} NOT IN (SELECT {key} FROM _contested)",
            params,
        ).fetchall()
        con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _winners")
        mark_loaded(con, lake, files)
        con.execute("DROP TABLE _contested")
        con.execute("DROP TABLE _winners")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return sum(f.rows for f in files)


def sync_fact(con: duckdb.DuckDBPyConnection, fact: FactTable, lake: PublishedTable) -> int:
    """Bring ``raw.<fact>`` up to the lake's manifest: merge every live file not yet merged.

    On an empty (new or rebuilt) database this is the full rebuild from the lake.
    """
    ensure_fact_table(con, fact)
    done = loaded_paths(con, lake)
    pending = [f for f in lake.read_manifest().files if f.path not in done]
    return merge_files(con, fact, lake, pending)


def mark_loaded(
    con: duckdb.DuckDBPyConnection, lake: PublishedTable, files: Sequence[LakeFile]
) -> None:
    """Record ``files`` as merged without merging (compaction output of already merged files)."""
    if not files:
        return
    now = utcnow()
    con.executemany(
        f"INSERT OR REPLACE INTO {LOADED_FILES} VALUES (?, ?, ?)",
        [[lake.name, f.path, now] for f in files],
    )


def row_count(con: duckdb.DuckDBPyConnection, raw_table: str) -> int:
    """Rows in ``raw.<raw_table>`` (0 when the table does not exist)."""
    if not table_exists(con, raw_table):
        return 0
    return int(con.execute(f"SELECT count(*) FROM {qualified(raw_table)}").fetchall()[0][0])


@dataclass(frozen=True)
class Changes:
    """The rows of a re-read batch to store, and the day partitions they supersede rows in."""

    rows: pa.Table
    replaced_days: frozenset[str] = frozenset()  # ISO days holding an older version of a row


def filter_changed(con: duckdb.DuckDBPyConnection, fact: FactTable, data: pa.Table) -> Changes:
    """The rows of ``data`` that are new or differ from the stored winner of their key.

    Re-read rows (the overlap, the look-back, a rollback window) that are already stored
    unchanged are dropped, so a run with nothing new writes nothing. A row that differs from
    the stored one replaces it: the days of both versions are returned, so that the lake
    rewrites those partitions instead of holding two versions of the key. Two steps keep it
    cheap on a large table: find the stored rows scanning only the key column, then compare
    just those rows, fetched by ``rowid`` (a filter on the key would decompress every row),
    column by column (``IS DISTINCT FROM`` on the packed content; hashing each row costs more
    than comparing it).
    """
    target = qualified(fact.raw_table)
    key, day = fact.key, fact.partition_column
    columns = rc.content_columns(fact.columns)
    con.register("_batch", data)
    try:
        rowids = con.sql(
            f"SELECT r.rowid AS stored_rowid FROM {target} AS r "
            f"SEMI JOIN _batch AS i ON r.{key} = i.{key}"
        ).to_arrow_table()
        if not rowids.num_rows:
            return Changes(data)
        con.register("_stored", rowids)
        try:
            joined = con.sql(
                f"SELECT i.*, r._day AS {STORED_DAY} FROM _batch AS i LEFT JOIN ("
                f"SELECT {key}, CAST({day} AS DATE) AS _day, {content_sql(columns)} AS _content "
                f"FROM {target} WHERE rowid IN (SELECT stored_rowid FROM _stored)) AS r "
                f"ON r.{key} = i.{key} "
                f"WHERE r.{key} IS NULL OR {content_sql(columns, 'i')} IS DISTINCT FROM r._content"
            ).to_arrow_table()
        finally:
            con.unregister("_stored")
    finally:
        con.unregister("_batch")
    # rows that supersede a stored version: the days of both versions are rewritten
    superseding = joined.filter(pc.is_valid(joined.column(STORED_DAY)))
    days = pc.unique(
        pa.chunked_array(
            [
                *superseding.column(STORED_DAY).chunks,
                *pc.cast(superseding.column(day), pa.date32()).chunks,
            ],
            type=pa.date32(),
        )
    )
    rows = joined.drop_columns([STORED_DAY]).cast(data.schema)
    return Changes(rows, frozenset(d.isoformat() for d in days.to_pylist()))


def replace_snapshot(
    con: duckdb.DuckDBPyConnection, raw_table: str, lake: PublishedTable, file: LakeFile
) -> int:
    """Replace ``raw.<raw_table>`` with the content of one snapshot file; return its rows."""
    ensure_schema(con)
    con.execute(
        f"CREATE OR REPLACE TABLE {qualified(raw_table)} AS "
        "SELECT * FROM read_parquet(?, hive_partitioning = false)",
        [str(lake.absolute(file))],
    )
    con.execute(
        f"INSERT OR REPLACE INTO {LOADED_FILES} VALUES (?, ?, ?)",
        [lake.name, file.path, utcnow()],
    )
    return row_count(con, raw_table)


def new_keys(con: duckdb.DuckDBPyConnection, raw_table: str, key: str, data: pa.Table) -> pa.Table:
    """The rows of ``data`` whose ``key`` is not in ``raw.<raw_table>`` yet."""
    con.register("_batch", data)
    try:
        result = con.sql(
            f"SELECT * FROM _batch AS i ANTI JOIN {qualified(raw_table)} AS r "
            f'ON r."{key}" = i."{key}"'
        ).to_arrow_table()
    finally:
        con.unregister("_batch")
    return result.cast(data.schema)


def rebuild_snapshot(
    con: duckdb.DuckDBPyConnection, raw_table: str, lake: PublishedTable, key: str, order_by: str
) -> int:
    """Rebuild ``raw.<raw_table>`` from every live file of an appended snapshot, one row per key."""
    ensure_schema(con)
    paths = [str(p) for p in lake.live_paths()]
    if not paths:
        return 0
    con.execute(
        f"CREATE OR REPLACE TABLE {qualified(raw_table)} AS SELECT * FROM "
        "read_parquet(?, union_by_name = true, hive_partitioning = false) "
        f'QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY {order_by}) = 1',
        [paths],
    )
    return row_count(con, raw_table)


def snapshot_loaded(con: duckdb.DuckDBPyConnection, raw_table: str, lake: PublishedTable) -> bool:
    """Whether the snapshot's live file is what ``raw.<raw_table>`` holds."""
    files = lake.read_manifest().files
    return bool(files) and table_exists(con, raw_table) and files[0].path in loaded_paths(con, lake)


def record_source_status(
    con: duckdb.DuckDBPyConnection,
    source_table: str,
    raw_table: str,
    status: str,
    rows: int | None,
    detail: str | None = None,
) -> None:
    """Record whether a source table was present (``present``) or missing (``absent``)."""
    record_source_statuses(con, [(source_table, raw_table, status, rows, detail)])


def record_source_statuses(
    con: duckdb.DuckDBPyConnection,
    statuses: Sequence[tuple[str, str, str, int | None, str | None]],
) -> None:
    """:func:`record_source_status` of many tables, ``(source, raw, status, rows, detail)``
    each, in one transaction (a commit per table costs more than the rows)."""
    ensure_schema(con)
    now = utcnow()
    con.execute("BEGIN TRANSACTION")
    try:
        con.executemany(
            f"INSERT OR REPLACE INTO {SOURCE_TABLES} VALUES (?, ?, ?, ?, ?, ?)",
            [[*status, now] for status in statuses],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
