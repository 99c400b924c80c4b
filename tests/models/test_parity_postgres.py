"""The postgres target gives the same marts as DuckDB, row for row, on the same raw data."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import duckdb
import psycopg
import pytest
from psycopg import sql

from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres
from tests.models.dbt_runner import AS_OF, MARTS, run_dbt

pytestmark = pytest.mark.integration


def _postgres_env(url: str, schema: str, raw_schema: str) -> dict[str, str]:
    parts = urlsplit(url)
    # An embedded server (no TEST_DATABASE_URL) listens on a unix socket: ?host=<directory>.
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    return {
        "DBT_TARGET": "postgres",
        "DBT_POSTGRES_HOST": parts.hostname or socket_dir or "127.0.0.1",
        "DBT_POSTGRES_PORT": str(parts.port or 5432),
        "DBT_POSTGRES_USER": parts.username or "postgres",
        "DBT_POSTGRES_PASSWORD": parts.password or "",
        "DBT_POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "DBT_POSTGRES_SCHEMA": schema,
        "DBT_RAW_SCHEMA": raw_schema,
    }


def _normalize(value):
    """Decimals without trailing zeros; JSON text the engines re-serialize (an audit row's nested
    object: PostgreSQL's jsonb orders keys and spaces them, DuckDB keeps them as written) in one
    canonical form."""
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def _rows(cursor_rows) -> list[tuple]:
    return sorted(
        (tuple(_normalize(v) for v in row) for row in cursor_rows),
        key=lambda row: tuple((v is None, str(v)) for v in row),
    )


@pytest.fixture
def pg_schema(pg_server_url):
    """A fresh schema name; every schema dbt and the loader create under it is dropped after."""
    schema = f"spendwh_parity_{uuid.uuid4().hex[:8]}"
    yield schema
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for suffix in ("", "_raw", "_staging", "_intermediate"):
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema + suffix))
            )


def test_postgres_marts_equal_duckdb_marts(built_duckdb, pg_server_url, pg_schema, tmp_path):
    copied = load_raw_to_postgres(built_duckdb.path, pg_server_url, pg_schema + "_raw")
    assert copied["spend_logs"] == len(built_duckdb.data.rows("spend_logs"))
    run_dbt(
        ["build"],
        tmp_path,
        _postgres_env(pg_server_url, pg_schema, pg_schema + "_raw"),
        vars_yaml=f'{{budget_as_of: "{AS_OF}"}}',
    )
    compared = 0
    with (
        duckdb.connect(str(built_duckdb.path), read_only=True) as duck,
        psycopg.connect(pg_server_url) as pg,
    ):
        for mart in MARTS:
            columns = [
                r[0]
                for r in duck.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'main' and table_name = ? order by ordinal_position",
                    [mart],
                ).fetchall()
            ]
            select = "select {} from {}.{}".format(", ".join(columns), "{}", mart)
            duck_rows = _rows(duck.execute(select.format("main")).fetchall())
            pg_rows = _rows(pg.execute(select.format(pg_schema)).fetchall())
            assert duck_rows, f"{mart} is empty on DuckDB"
            assert pg_rows == duck_rows, f"{mart} differs between PostgreSQL and DuckDB"
            compared += len(duck_rows)
    assert compared > 5000
