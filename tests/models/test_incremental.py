"""An incremental re-build of the daily facts equals a full re-build on the same raw data."""

from __future__ import annotations

import shutil
from datetime import timedelta

import duckdb
import pytest

from tests.models.dbt_runner import AS_OF, duckdb_env, run_dbt
from tests.models.raw_data import insert_rows, make_dataset, write_raw_layer

pytestmark = pytest.mark.integration

INCREMENTAL = ("fct_spend_daily", "fct_spend_by_tag_daily", "fct_errors_daily")
SELECT = ["--select", "+fct_spend_daily +fct_spend_by_tag_daily +fct_errors_daily"]


def _snapshot(path, table):
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(conn.execute(f"select * from main.{table}").fetchall(), key=str)


def test_incremental_rebuild_equals_full_rebuild(tmp_path):
    data = make_dataset(seed=11, requests=1500)
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    vars_yaml = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    before = {t: _snapshot(path, t) for t in INCREMENTAL}

    # New rows: late arrivals inside the re-build window and a new day.
    newest = max(r["start_time"] for r in data.rows("spend_logs"))
    late = make_dataset(seed=12, requests=200, start=newest - timedelta(days=2), days=3)
    for row in late.rows("spend_logs"):
        row["request_id"] = "late_" + row["request_id"]
    # A very late row: an old day, far outside the re-build window, extracted now.
    oldest = min(r["start_time"] for r in data.rows("spend_logs"))
    very_late = dict(late.rows("spend_logs")[0], request_id="very_late_1", start_time=oldest)
    very_late["_extracted_at"] = newest + timedelta(days=1)
    late.rows("spend_logs").append(very_late)
    for row in late.rows("error_logs"):
        row["request_id"] = "late_" + row["request_id"]
    with duckdb.connect(str(path)) as conn:
        insert_rows(conn, "spend_logs", late.rows("spend_logs"))
        insert_rows(conn, "error_logs", late.rows("error_logs"))

    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    incremental = {t: _snapshot(path, t) for t in INCREMENTAL}

    full_path = tmp_path / "full.duckdb"
    shutil.copy(path, full_path)
    run_dbt(["run", "--full-refresh", *SELECT], tmp_path, duckdb_env(full_path), vars_yaml)
    full = {t: _snapshot(full_path, t) for t in INCREMENTAL}

    for table in INCREMENTAL:
        assert incremental[table] != before[table], f"{table} did not change"
        assert incremental[table] == full[table], f"{table}: incremental != full re-build"
    with duckdb.connect(str(path), read_only=True) as conn:
        first_day = conn.execute(
            "select sum(request_count) from main.fct_spend_daily where spend_date = ?",
            [oldest.date()],
        ).fetchone()[0]
    expected = sum(1 for r in data.rows("spend_logs") if r["start_time"].date() == oldest.date())
    assert first_day == expected + 1
