"""The postgres target gives the same marts as DuckDB, row for row, on the same raw data."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres
from tests.models.dbt_runner import AS_OF, run_dbt
from tests.models.parity import assert_marts_equal

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
    with psycopg.connect(pg_server_url) as pg:
        compared = assert_marts_equal(
            built_duckdb.path,
            lambda mart, cols: pg.execute(f"select {cols} from {pg_schema}.{mart}").fetchall(),
            "PostgreSQL",
        )
    assert compared > 5000
