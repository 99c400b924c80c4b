"""The postgres target gives the same marts as DuckDB, row for row, on the same raw data."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import duckdb
import psycopg
import pytest
from psycopg import sql

from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres
from tests.models.dbt_runner import AS_OF, run_dbt
from tests.models.parity import assert_marts_equal
from tests.models.raw_data import make_dataset, write_raw_layer

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
        for suffix in ("", "_raw", "_staging", "_intermediate", "_full", "_full_staging"):
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


def test_postgres_incremental_facts_follow_a_key_and_team_moved_to_another_owner(
    pg_server_url, pg_schema, tmp_path
):
    """As on DuckDB (tests/models/test_incremental.py): after a key's owner and a team's
    organization change, an incremental build of the daily facts equals a full one."""
    data = make_dataset(seed=11, requests=1500)
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    with duckdb.connect(str(path)) as conn:  # requests that take owner and organization from
        conn.execute("update raw.spend_logs set user_id = null where api_key = 'hash_k1'")
        conn.execute(
            "update raw.spend_logs set organization_id = null, meta_organization_id = null "
            "where team_id = 'team_1'"
        )
        conn.execute(
            "update raw.verification_tokens set organization_id = null where team_id = 'team_1'"
        )
    raw = pg_schema + "_raw"
    load_raw_to_postgres(path, pg_server_url, raw)
    facts = ["fct_spend_daily", "fct_spend_by_tag_daily", "fct_errors_daily"]
    select = ["--select", *(f"+{fact}" for fact in facts)]
    as_of = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *select], tmp_path, _postgres_env(pg_server_url, pg_schema, raw), as_of)
    with psycopg.connect(pg_server_url, autocommit=True) as pg:
        moves = [("verification_tokens", "user_id", "owner_2", "token", "hash_k1")]
        moves.append(("teams", "organization_id", "org_2", "team_id", "team_1"))
        for table, column, value, key, key_value in moves:
            pg.execute(
                f"update {raw}.{table} set {column} = %s where {key} = %s", (value, key_value)
            )
    run_dbt(["run", *select], tmp_path, _postgres_env(pg_server_url, pg_schema, raw), as_of)
    full = pg_schema + "_full"
    run_dbt(["run", *select], tmp_path, _postgres_env(pg_server_url, full, raw), as_of)

    with psycopg.connect(pg_server_url) as pg:

        def rows(schema: str, fact: str) -> list[tuple]:
            return sorted(pg.execute(f"select * from {schema}.{fact}").fetchall(), key=str)

        for fact in facts:
            assert rows(pg_schema, fact) == rows(full, fact), f"{fact}: != full build"
        moved = pg.execute(
            f"select count(distinct spend_date) filter (where user_id = 'owner_2'), "
            f"count(distinct spend_date) filter (where organization_id = 'org_2') "
            f"from {pg_schema}.fct_spend_daily"
        ).fetchone()
    assert min(moved) > 4  # days older than the re-build window
