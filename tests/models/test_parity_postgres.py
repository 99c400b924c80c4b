"""The postgres target gives the same marts as DuckDB, row for row, on the same raw data."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
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
        suffixes = ["", "_raw", "_staging", "_intermediate"]
        for suffix in [*suffixes, *("_full" + suffix for suffix in suffixes[1:]), "_full"]:
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
    assert_every_query_ran_without_jit(tmp_path)


def assert_every_query_ran_without_jit(work_dir) -> None:
    """Every model and data test of the build turned PostgreSQL's JIT off first: the planner's
    estimates of the stacked views made it compile queries for far longer than they ran."""
    results = json.loads((work_dir / "target" / "run_results.json").read_text())["results"]
    nodes = {r["unique_id"] for r in results if r["unique_id"].split(".")[0] in {"model", "test"}}
    log = (work_dir / "logs" / "dbt.log").read_text()
    without_jit = set(re.findall(r"On ([\w.]+): /\*[^\n]*\*/\s*set local jit = off", log))
    assert len(nodes) > 100
    assert nodes <= without_jit, sorted(nodes - without_jit)[:5]


def test_postgres_incremental_builds_equal_full_builds(pg_server_url, pg_schema, tmp_path):
    """As on DuckDB (tests/models/test_incremental.py): after late requests, after a key's owner
    and a team's organization change, and after a budget's limit changes, incremental builds of
    the daily facts, the entity spend buckets and the limit crossings equal full ones."""
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
    buckets = (  # without inputs_fingerprint, which differs after a full refresh of the versions
        "entity_type, entity_id, bucket_local, hour_local, spend_usd, request_count, "
        "first_request_at, last_request_at, bucket_date, last_extracted_at"
    )
    tables = [(None, fact, "*") for fact in facts]
    tables.append(("_intermediate", "int_entity_spend_buckets", buckets))
    crossings = (  # without the build's watermark and the shared inputs' fingerprint
        "entity_budget_id, period_start, crossing_type, threshold_pct, threshold_usd, "
        "period_spend_at_crossing_usd, crossed_at, budget_fingerprint"
    )
    tables.append(("_intermediate", "int_budget_limit_crossings", crossings))
    select = ["--select", *(f"+{table}" for _, table, _ in tables)]
    as_of = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *select], tmp_path, _postgres_env(pg_server_url, pg_schema, raw), as_of)
    full = pg_schema + "_full"

    def assert_equal_to_full_build(step: str) -> None:
        run_dbt(["run", *select], tmp_path, _postgres_env(pg_server_url, pg_schema, raw), as_of)
        env = _postgres_env(pg_server_url, full, raw)
        run_dbt(["run", "--full-refresh", *select], tmp_path, env, as_of)
        with psycopg.connect(pg_server_url) as pg:
            for suffix, table, columns in tables:

                def rows(schema: str, table: str = table, suffix=suffix, columns=columns):
                    query = f"select {columns} from {schema}{suffix or ''}.{table}"
                    return sorted(pg.execute(query).fetchall(), key=str)

                assert rows(pg_schema) == rows(full), f"{table} after {step}: != full build"

    oldest = min(r["start_time"] for r in data.rows("spend_logs"))
    newest = max(r["start_time"] for r in data.rows("spend_logs"))
    arrived = {"_extracted_at": newest + timedelta(days=1)}
    late = [
        dict(data.rows("spend_logs")[0], request_id="very_late_1", start_time=oldest, **arrived),
        dict(data.rows("spend_logs")[1], request_id="new_1", start_time=newest, **arrived),
    ]
    columns = list(late[0])
    insert = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier(raw, "spend_logs"),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with psycopg.connect(pg_server_url, autocommit=True) as pg:
        for row in late:
            pg.execute(insert, [row[column] for column in columns])
    assert_equal_to_full_build("late requests")

    with psycopg.connect(pg_server_url, autocommit=True) as pg:
        moves = [("verification_tokens", "user_id", "owner_2", "token", "hash_k1")]
        moves.append(("teams", "organization_id", "org_2", "team_id", "team_1"))
        for table, column, value, key, key_value in moves:
            pg.execute(
                f"update {raw}.{table} set {column} = %s where {key} = %s", (value, key_value)
            )
    assert_equal_to_full_build("owner and organization moves")
    with psycopg.connect(pg_server_url) as pg:
        moved = pg.execute(
            f"select count(distinct spend_date) filter (where user_id = 'owner_2'), "
            f"count(distinct spend_date) filter (where organization_id = 'org_2') "
            f"from {pg_schema}.fct_spend_daily"
        ).fetchone()
    assert min(moved) > 4  # days older than the re-build window

    with psycopg.connect(pg_server_url, autocommit=True) as pg:
        pg.execute(f"update {raw}.budgets set max_budget = 1 where budget_id = 'b_tag_day'")
    assert_equal_to_full_build("a lower max budget")
