"""The marts, built by `dbt build` on DuckDB, against totals computed in Python from raw rows."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import datetime
from decimal import Decimal

import duckdb
import pytest

from dagster_project.settings import DBT_PROJECT_DIR
from tests.models.budget_periods import parse_duration, period_bounds
from tests.models.checks import (
    check_budget_periods,
    check_current_periods,
    check_project_budgets,
    check_spend_daily,
    check_tag_allocation,
    check_tag_budgets,
    check_threshold_crossings,
)
from tests.models.dbt_runner import AS_OF, DbtFailedError, duckdb_env, read_mart, run_dbt
from tests.models.raw_data import make_dataset, write_raw_layer
from tests.models.reference import attributed_requests, is_valid_duration, money, resolved_budgets

pytestmark = pytest.mark.integration


def test_build_ran_unit_tests_and_data_tests(built_duckdb):
    found = re.search(
        r"Found (\d+) models, (\d+) data tests.* (\d+) unit tests", built_duckdb.output
    )
    assert found, built_duckdb.output[-2000:]
    models, data_tests, unit_tests = map(int, found.groups())
    manifest = json.loads((built_duckdb.path.parent / "target" / "manifest.json").read_text())
    nodes = manifest["nodes"].values()
    assert models == len(list((DBT_PROJECT_DIR / "models").rglob("*.sql")))
    assert data_tests == sum(node["resource_type"] == "test" for node in nodes)
    assert unit_tests == len(manifest["unit_tests"]) > 0
    assert "ERROR=0" in built_duckdb.output


def test_spend_daily_matches_raw_rows(built_duckdb):
    assert check_spend_daily(built_duckdb.path, built_duckdb.data) == 3000


def test_tag_allocation_never_double_counts(built_duckdb):
    check_tag_allocation(built_duckdb.path, built_duckdb.data)


def test_errors_daily_counts_error_logs(built_duckdb):
    expected = Counter(
        (r["start_time"].date(), r["exception_type"] or "unknown")
        for r in built_duckdb.data.rows("error_logs")
    )
    actual: Counter = Counter()
    for row in read_mart(built_duckdb.path, "fct_errors_daily"):
        actual[(row["error_date"], row["exception_type"])] += row["error_count"]
    assert actual == expected


def test_budget_periods_match_reference(built_duckdb):
    assert check_budget_periods(built_duckdb.path, built_duckdb.data) > 1000


def test_tag_budgets_count_full_cost_per_budgeted_tag(built_duckdb):
    assert check_tag_budgets(built_duckdb.path, built_duckdb.data) > 20


def test_project_budgets_count_full_cost_of_the_project_keys(built_duckdb):
    assert check_project_budgets(built_duckdb.path, built_duckdb.data) > 20


def test_every_budget_has_one_current_period(built_duckdb):
    check_current_periods(built_duckdb.path, datetime.fromisoformat(AS_OF))


def test_threshold_crossings_match_reference(built_duckdb):
    assert check_threshold_crossings(built_duckdb.path, built_duckdb.data) > 100


def test_invalid_durations_are_listed_not_unlimited(built_duckdb):
    listed = {
        (r["entity_type"], r["entity_id"], r["budget_duration"])
        for r in read_mart(built_duckdb.path, "fct_budget_duration_errors")
        if r["budget_source"] != "spend_counter"
    }
    expected = {
        (b.entity_type, b.entity_id, b.duration)
        for b in resolved_budgets(built_duckdb.data)
        if not is_valid_duration(b.duration)
    }
    assert listed == expected
    assert expected == {
        ("key", "hash_k7", "1d trailing"),
        ("user", "user_5", "1M"),
        ("team_member", "team_2/user_2", "2mo"),
    }
    assert "WARN 6 has_no_rows_fct_budget_duration_errors" in built_duckdb.output


def test_reconciliation_uses_current_period_log_spend(built_duckdb):
    requests = attributed_requests(built_duckdb.data)
    as_of = datetime.fromisoformat(AS_OF)
    keys = {k["token"]: k for k in built_duckdb.data.rows("verification_tokens")}
    rows = {
        r["entity_id"]: r
        for r in read_mart(built_duckdb.path, "fct_spend_counter_reconciliation")
        if r["entity_type"] == "key"
    }
    start, _ = period_bounds(as_of, parse_duration("1d"))
    expected = sum(
        (
            r.spend
            for r in requests
            if r.entities.get("key") == "hash_k2" and start <= r.started_at <= as_of
        ),
        Decimal(0),
    )
    assert rows["hash_k2"]["comparison_window"] == "current_period"
    assert rows["hash_k2"]["log_spend_usd"] == expected
    assert rows["hash_k2"]["drift_usd"] == money(keys["hash_k2"]["spend"]) - expected
    assert rows["hash_k7"]["reconciliation_status"] == "invalid_duration"


@pytest.mark.parametrize(
    ("change", "violated"),
    [
        ("entity_type = 'bogus'", "CHECK"),
        ("budget_period_id = null", "NOT NULL"),
        ("period_end = period_start", "CHECK"),
    ],
)
def test_marts_enforce_their_contract_constraints(built_duckdb, tmp_path, change, violated):
    """A row that breaks a mart's constraints cannot be stored: the build fails, the table stays."""
    path = tmp_path / "copy.duckdb"
    shutil.copy(built_duckdb.path, path)
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "create temp table bad as select * from main.fct_budget_periods "
            "where period_end is not null limit 1"
        )
        conn.execute(f"update bad set {change}")
        with pytest.raises(duckdb.ConstraintException, match=violated):
            conn.execute("insert into main.fct_budget_periods select * from bad")


@pytest.mark.parametrize("broken", ["duplicate", "null"])
def test_primary_key_test_fails_on_a_duplicate_or_null_key(tmp_path, broken):
    data = make_dataset(requests=50)
    rows = data.rows("spend_logs")
    if broken == "duplicate":
        rows.append(dict(rows[0]))
    else:
        rows[0]["request_id"] = None
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    with pytest.raises(DbtFailedError, match="primary_key_stg_proxy__spend_logs_request_id"):
        run_dbt(["build", "--select", "stg_proxy__spend_logs"], tmp_path, duckdb_env(path))
