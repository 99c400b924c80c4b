"""`spendwh check` validates the source and the warehouse with one clear sentence, not a traceback.

Each case runs the installed ``spendwh`` script with a service manager's PATH.
"""

from __future__ import annotations

import pytest

from dagster_project.cli import EXIT_CONFIG, EXIT_TRY_AGAIN
from dagster_project.commands.check import quiet_run_report
from dagster_project.lib.ingest.changes import ChangeMarker
from tests.duckdb_files import build_database, held_open
from tests.spendwh import assert_one_sentence, run_spendwh

pytestmark = pytest.mark.integration


def _check(env: dict[str, str], tmp_path):
    return run_spendwh(["check"], cwd=tmp_path, env=env, timeout=120)


def _source_env(source, tmp_path) -> dict[str, str]:
    return {
        "DATABASE_URL": source.url,
        "PROXY_TABLE_PREFIX": source.prefix,
        "SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"),
    }


def test_check_accepts_a_proxy_database(source, tmp_path):
    result = _check(_source_env(source, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SpendLogs present" in result.stdout
    assert "not built yet ('spendwh run' builds it)" in result.stdout


def test_check_reports_the_published_warehouse(make_source, tmp_path):
    env = _source_env(make_source(), tmp_path)
    build_database(tmp_path / "wh" / "warehouse.duckdb", rows=1234)
    result = _check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warehouse.duckdb, 1,234 spend logs" in result.stdout


def test_wrong_prefix_names_the_prefix_that_exists(make_source, tmp_path):
    src = make_source(prefix="LiteLLM_")
    result = _check({"DATABASE_URL": src.url, "PROXY_TABLE_PREFIX": "Dheera AI_"}, tmp_path)
    assert_one_sentence(result, EXIT_CONFIG, "set PROXY_TABLE_PREFIX to that", "'LiteLLM_'")


def test_missing_spend_logs_table_is_one_sentence(make_source, tmp_path):
    source = make_source()
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('SpendLogs')}")
    result = _check(_source_env(source, tmp_path), tmp_path)
    assert_one_sentence(
        result, EXIT_CONFIG, f"no '{source.prefix}SpendLogs'", "run the proxy's database migrations"
    )


def test_unreachable_database_is_one_sentence(tmp_path):
    result = _check({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/proxy"}, tmp_path)
    line = assert_one_sentence(result, EXIT_CONFIG, "Cannot connect to DATABASE_URL")
    assert "secret" not in line


def test_unknown_host_is_one_sentence(tmp_path):
    result = _check({"DATABASE_URL": "postgresql://u@proxy-db.invalid:5432/proxy"}, tmp_path)
    assert_one_sentence(result, EXIT_CONFIG, "Cannot connect to DATABASE_URL", "proxy-db.invalid")


def test_malformed_url(tmp_path):
    result = _check({"DATABASE_URL": "not a url"}, tmp_path)
    assert_one_sentence(result, EXIT_CONFIG, "DATABASE_URL must start with postgresql://")


def test_warehouse_held_by_another_process_is_one_sentence(make_source, tmp_path):
    env = _source_env(make_source(), tmp_path)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    build_database(warehouse, rows=10)
    with held_open(warehouse) as pid:
        result = _check(env, tmp_path)
    assert_one_sentence(
        result, EXIT_TRY_AGAIN, f"{warehouse} is open in process {pid}", "wait for it to finish"
    )


def test_check_prints_the_created_at_index_statement_and_sees_the_index(source, tmp_path):
    env = _source_env(source, tmp_path)
    before = _check(env, tmp_path)
    assert before.returncode == 0, before.stderr
    assert "no index leading with created_at" in before.stdout
    (statement,) = [
        line.strip() for line in before.stdout.splitlines() if "CREATE INDEX CONCURRENTLY" in line
    ]
    assert statement == (
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{source.prefix}SpendLogs_created_at_idx" '
        f'ON "{source.prefix}SpendLogs" (created_at);'
    )
    assert f"status: '{source.prefix}SpendLogs' is empty: a new proxy" in before.stdout
    with source.connect(autocommit=True) as conn:  # what the DBA runs
        conn.execute(statement)
        conn.execute(
            f'INSERT INTO {source.table("SpendLogs")} (request_id, call_type, "startTime", '
            "\"endTime\") VALUES ('r', 'acompletion', now(), now())"
        )
    after = _check(env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert "index leading with created_at present" in after.stdout
    assert "CREATE INDEX" not in after.stdout
    assert "is empty" not in after.stdout


def test_check_names_an_emptied_source_with_a_warehouse_source_disabled(make_source, tmp_path):
    env = _source_env(make_source(), tmp_path)
    build_database(tmp_path / "wh" / "warehouse.duckdb", rows=1234)
    result = _check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "status: source disabled: 'Dheera AI_SpendLogs' is empty while the warehouse holds "
        "1,234 spend logs" in result.stdout
    )


def test_check_on_an_older_schema_names_the_start_time_cursor(make_source, tmp_path):
    source = make_source(until="20251101000000")
    result = _check(_source_env(source, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cursor: startTime" in result.stdout
    assert "reuse the last passing reconciliation (the startTime cursor is read" in result.stdout


def test_check_says_what_quiet_runs_skip_and_why_not(make_source, tmp_path):
    source = make_source()
    env = _source_env(source, tmp_path)
    result = _check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "quiet runs: while PostgreSQL's write counts and the lake are unchanged, runs skip the "
        "read and reuse the last passing reconciliation, for up to 60 minutes"
    ) in result.stdout

    off = _check({**env, "SPEND_WAREHOUSE_UNCHANGED_MINUTES": "0"}, tmp_path)
    assert "in full every time (SPEND_WAREHOUSE_UNCHANGED_MINUTES=0)" in off.stdout

    with source.connect(autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{source.dbname}" SET track_counts = off')
    result = _check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "in full every time: track_counts is off, so PostgreSQL's write counts" in result.stdout


def test_quiet_run_report_names_each_reason():
    standby = ChangeMarker(None, "a standby does not count the writes it replays")
    assert quiet_run_report(standby, True, 60).endswith(
        "every time: a standby does not count the writes it replays, so PostgreSQL's write "
        "counts cannot tell that nothing changed"
    )
    usable = ChangeMarker("digest")
    assert "for up to 15 minutes" in quiet_run_report(usable, True, 15)
    assert "skip the read" not in quiet_run_report(usable, False, 15)
    assert "(SPEND_WAREHOUSE_UNCHANGED_MINUTES=0)" in quiet_run_report(usable, True, 0)
