"""The history of budget limits the extraction keeps (lib/ingest/limit_history.py), on DuckDB."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.limit_history import HISTORY_TABLE, record_limit_history
from tests.ingest import helpers

T1, T2, T3, T4 = (datetime(2026, 3, d, 12) for d in (1, 2, 3, 4))

pytestmark = pytest.mark.usefixtures("lake_format")


def _lake(tmp_path) -> Lake:
    """The test's lake, in the format of the ``lake_format`` fixture."""
    return Lake(tmp_path / "lake", helpers.LAKE_FORMAT)


@pytest.fixture
def con(tmp_path):
    conn = duckdb.connect(str(tmp_path / "build.duckdb"))
    conn.execute("create schema raw")
    conn.execute(
        "create table raw.budgets (budget_id varchar, max_budget double, soft_budget double, "
        "budget_duration varchar, spend double, updated_at timestamp)"
    )
    conn.execute(  # an older proxy: no updated_at, no model_max_budget
        "create table raw.organizations (organization_id varchar, budget_id varchar)"
    )
    conn.execute(
        "insert into raw.budgets values ('b1', 10, 5, '1d', 0, '2026-02-01'), "
        "('b2', 20, null, '7d', 0, '2026-02-01')"
    )
    conn.execute("insert into raw.organizations values ('o1', 'b1')")
    yield conn
    conn.close()


def _versions(con) -> list[tuple]:
    return con.execute(
        f"select source_table, entity_id, is_deleted, valid_from, "
        f"json_extract_string(limits_json, '$.max_budget') from raw.{HISTORY_TABLE} "
        "order by source_table, entity_id, valid_from nulls first"
    ).fetchall()


def test_first_snapshot_records_every_row_valid_since_ever(con, tmp_path):
    result = record_limit_history(con, _lake(tmp_path), T1)
    assert (result.versions, result.tombstones, result.rows) == (3, 0, 3)
    assert _versions(con) == [
        ("budgets", "b1", False, None, "10.0"),
        ("budgets", "b2", False, None, "20.0"),
        ("organizations", "o1", False, None, None),
    ]


def test_only_limit_changes_make_versions_and_deletions_keep_the_history(con, tmp_path):
    lake = _lake(tmp_path)
    record_limit_history(con, lake, T1)
    con.execute("update raw.budgets set spend = 3")  # a counter moving is not a limit change
    assert record_limit_history(con, lake, T2).versions == 0
    con.execute(
        "update raw.budgets set max_budget = 12, updated_at = '2026-03-02 18:00' "
        "where budget_id = 'b1'"
    )
    con.execute("delete from raw.budgets where budget_id = 'b2'")
    con.execute("update raw.organizations set budget_id = 'b2'")  # no updated_at: snapshot time
    result = record_limit_history(con, lake, T3)
    assert (result.versions, result.tombstones, result.rows) == (3, 1, 6)
    assert _versions(con) == [
        ("budgets", "b1", False, None, "10.0"),
        ("budgets", "b1", False, datetime(2026, 3, 2, 18), "12.0"),  # the proxy's stamp
        ("budgets", "b2", False, None, "20.0"),
        ("budgets", "b2", True, T3, None),  # deleted: its versions stay
        ("organizations", "o1", False, None, None),
        ("organizations", "o1", False, T3, None),
    ]
    con.execute("insert into raw.budgets values ('b2', 20, null, '7d', 0, '2026-02-01')")
    result = record_limit_history(con, lake, T4)  # re-created after a deletion: a new version
    assert (result.versions, result.tombstones) == (1, 0)


def test_a_run_killed_after_the_publish_stores_nothing_twice(con, tmp_path):
    lake = _lake(tmp_path)
    record_limit_history(con, lake, T1)
    con.execute("update raw.budgets set max_budget = 11 where budget_id = 'b1'")
    record_limit_history(con, lake, T2)
    con.execute(f"drop table raw.{HISTORY_TABLE}")  # as if killed before raw was rebuilt
    result = record_limit_history(con, lake, T3)
    assert (result.versions, result.rows) == (0, 4)
    files = lake.table(f"snapshots/{HISTORY_TABLE}").read_manifest().files
    assert len(files) == 2  # the first run's and the change's; the re-run added none


def test_no_budget_table_yet_stores_an_empty_history_with_its_columns(tmp_path):
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn:
        conn.execute("create schema raw")
        result = record_limit_history(conn, _lake(tmp_path), T1)
        assert (result.versions, result.rows) == (0, 0)
        columns = [r[0] for r in conn.execute(f"describe raw.{HISTORY_TABLE}").fetchall()]
        assert "limits_json" in columns
        assert "valid_from" in columns
