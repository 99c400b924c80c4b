"""Copy the raw layer from the DuckDB build database into PostgreSQL for the dbt postgres target.

The dbt project reads its sources from schema ``raw`` in DuckDB by default; with
``DBT_TARGET=postgres`` it reads them from the PostgreSQL schema named by ``DBT_RAW_SCHEMA``.
This module copies every table of DuckDB schema ``raw`` there with the same column types
(VARCHAR -> text, DOUBLE -> double precision, TIMESTAMP -> timestamp, ...), so both targets
compute on identical inputs and give identical marts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from dagster_project.lib.ingest.contract import RAW_SCHEMA

_SIMPLE_TYPES = {
    "VARCHAR": "text",
    "JSON": "text",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
_COPY_BATCH_ROWS = 50_000


class UnsupportedRawTypeError(ValueError):
    """A raw column has a DuckDB type without a PostgreSQL equivalent here."""


def postgres_type(duckdb_type: str, column: str = "?") -> str:
    """The PostgreSQL type that holds the DuckDB type ``duckdb_type`` without change."""
    if duckdb_type in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[duckdb_type]
    match = _DECIMAL.fullmatch(duckdb_type)
    if match:
        return f"numeric({match.group(1)}, {match.group(2)})"
    raise UnsupportedRawTypeError(
        f"raw column {column!r} has DuckDB type {duckdb_type}, which the PostgreSQL loader cannot "
        "map; land it as VARCHAR, DOUBLE, BIGINT, BOOLEAN or TIMESTAMP in the raw contract"
    )


def raw_tables(conn: duckdb.DuckDBPyConnection, schema: str = RAW_SCHEMA) -> list[str]:
    """Names of the tables in DuckDB schema ``schema``."""
    rows = conn.execute(
        "select table_name from information_schema.tables "
        "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
        [schema],
    ).fetchall()
    return [r[0] for r in rows]


def _columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()


def load_raw_to_postgres(
    duckdb_path: Path,
    postgres_url: str,
    target_schema: str,
    tables: Iterable[str] | None = None,
    source_schema: str = RAW_SCHEMA,
) -> dict[str, int]:
    """Replace ``target_schema``'s copies of the raw tables; return rows copied per table."""
    copied: dict[str, int] = {}
    with (
        duckdb.connect(str(duckdb_path), read_only=True) as source,
        psycopg.connect(postgres_url) as target,
    ):
        names = list(tables) if tables is not None else raw_tables(source, source_schema)
        create_schema = sql.SQL("create schema if not exists {}")
        target.execute(create_schema.format(sql.Identifier(target_schema)))
        for table in names:
            copied[table] = _copy_table(source, target, source_schema, target_schema, table)
        target.commit()
    return copied


def _copy_table(
    source: duckdb.DuckDBPyConnection,
    target: psycopg.Connection,
    source_schema: str,
    target_schema: str,
    table: str,
) -> int:
    columns = _columns(source, source_schema, table)
    qualified = sql.Identifier(target_schema, table)
    target.execute(sql.SQL("drop table if exists {}").format(qualified))
    target.execute(
        sql.SQL("create table {} ({})").format(
            qualified,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(postgres_type(typ, name)))
                for name, typ in columns
            ),
        )
    )
    column_list = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
    select = "select {} from {}.{}".format(
        ", ".join(f'"{name}"' for name, _ in columns), f'"{source_schema}"', f'"{table}"'
    )
    result = source.execute(select)
    total = 0
    with target.cursor().copy(
        sql.SQL("copy {} ({}) from stdin").format(qualified, column_list)
    ) as copy:
        while batch := result.fetchmany(_COPY_BATCH_ROWS):
            for row in batch:
                copy.write_row(row)
            total += len(batch)
    return total
