"""Simulated proxy traffic through the real extraction, then dbt, checked against the source.

The simulator writes SpendLogs, ErrorLogs and entities into a fresh proxy database; the
extraction lands them in the build DuckDB as the assets do; `dbt build` runs with budgets aligned
in New York time. Spend per day is checked against the proxy's own SpendLogs, and
budget periods and crossings against the Python reference computed from the landed rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest.extract import extract_fact, extract_snapshots
from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.source import ERROR_LOGS, SPEND_LOGS, SourceSession
from dagster_project.simulator import simulate
from tests.models.checks import (
    check_budget_periods,
    check_current_periods,
    check_model_budgets,
    check_spend_daily,
    check_tag_allocation,
    check_threshold_crossings,
    raw_dataset_from,
)
from tests.models.dbt_runner import duckdb_env, read_mart, run_dbt
from tests.models.reference import money

pytestmark = [pytest.mark.integration, pytest.mark.slow]

END = datetime(2026, 3, 1, 12, 0)
TZ = "America/New_York"


def test_simulated_traffic_through_extraction_and_dbt(make_source, tmp_path):
    source = make_source()  # the prefix is the extraction's concern, tested there
    sim = simulate(source.url, source.prefix, seed=5, end=END, days=20, rows=4000)
    build = tmp_path / "state" / "build.duckdb"
    with (
        SourceSession(source.url, source.prefix) as session,
        connect_writer(build) as con,
    ):
        for fact in (SPEND_LOGS, ERROR_LOGS):
            extract_fact(session, con, Lake(tmp_path / "lake"), fact)
        extract_snapshots(session, con, Lake(tmp_path / "lake"), progress=lambda _msg: None)

    run_dbt(
        ["build"],
        tmp_path,
        {**duckdb_env(build), "BUDGET_TIMEZONE": TZ},
        vars_yaml=f'{{budget_as_of: "{END:%Y-%m-%d %H:%M:%S}"}}',
    )

    # Spend per UTC day against the proxy's own table, read directly.
    with source.connect() as conn:
        rows = conn.execute(
            f'select "startTime", spend from {source.table("SpendLogs")}'
        ).fetchall()
    by_day: dict = defaultdict(Decimal)
    for started, spend in rows:
        by_day[started.date()] += money(spend)
    marts: dict = defaultdict(Decimal)
    for row in read_mart(build, "fct_spend_daily"):
        marts[row["spend_date"]] += row["spend_usd"]
    assert marts == by_day
    assert len(rows) > 3000

    data = raw_dataset_from(build)
    assert check_spend_daily(build, data) == len(rows)
    check_tag_allocation(build, data)
    assert check_budget_periods(build, data, TZ) > 50
    assert check_threshold_crossings(build, data, TZ) > 0
    check_current_periods(build, END)
    assert check_model_budgets(build, data, END) > 20
    crossed = {
        r["budget_source"]
        for r in read_mart(build, "fct_budget_threshold_crossings")
        if r["budget_model"] is not None and r["crossing_type"] == "max_budget"
    }
    assert "key_model_max_budget" in crossed

    # Every rotation the simulator wrote is found, on the evidence it left, and every old hash
    # names the key's current hash.
    live_token = {
        r.key_index: sim.population.keys[r.key_index].token for r in sim.population.rotations
    }
    evidence = {"audit_log": "audit_log", "deprecated_token": "deprecated_token",
                "none": "deleted_row_match"}  # fmt: skip
    keys = {r["key_hash"]: r for r in read_mart(build, "dim_keys")}
    assert {h for h, r in keys.items() if r["rotated_at"] is not None} == {
        r.old_token for r in sim.population.rotations
    }
    for rotation in sim.population.rotations:
        row = keys[rotation.old_token]
        assert row["key_identity"] == live_token[rotation.key_index], rotation
        assert row["rotation_evidence"] == evidence[rotation.evidence], rotation
    assert {r.evidence for r in sim.population.rotations} == set(evidence)

    # The proxy's BudgetWindowSpend windows start at UTC boundaries: in New York time none of
    # the warehouse's periods shares their start; rebuilt in UTC, each is compared with the log
    # spend of its window, summed here from the landed rows.
    statuses = {
        r["reconciliation_status"] for r in read_mart(build, "fct_budget_window_reconciliation")
    }
    assert statuses == {"not_aligned"}
    run_dbt(
        ["build", "--select", "+fct_budget_window_reconciliation"],
        tmp_path,
        {**duckdb_env(build), "BUDGET_TIMEZONE": "UTC"},
        vars_yaml=f'{{budget_as_of: "{END:%Y-%m-%d %H:%M:%S}"}}',
    )
    rows = read_mart(build, "fct_budget_window_reconciliation")
    assert len(rows) == len(data.rows("budget_window_spend")) > 2
    for row in rows:
        column = "api_key" if row["entity_type"] == "key" else "team_id"
        days = {"1d": 1, "7d": 7}[row["budget_window"]]
        logged = sum(
            (
                money(r["spend"])
                for r in data.rows("spend_logs")
                if r[column] == row["entity_id"]
                and row["window_start"] <= r["start_time"] < row["window_start"] + timedelta(days)
            ),
            Decimal(0),
        )
        assert row["log_window_spend_usd"] == logged, row
        tolerance = max(Decimal("0.01"), logged / 100)
        expected = "ok" if abs(row["proxy_window_spend_usd"] - logged) <= tolerance else "drift"
        assert row["reconciliation_status"] == expected, row
    assert {r["reconciliation_status"] for r in rows} == {"ok", "drift"}
