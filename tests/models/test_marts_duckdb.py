"""The marts, built by `dbt build` on DuckDB, against totals computed in Python from raw rows."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import duckdb
import pytest

from dagster_project.settings import DBT_PROJECT_DIR
from tests.models.budget_periods import parse_duration, period_bounds
from tests.models.checks import (
    check_budget_periods,
    check_current_periods,
    check_model_budgets,
    check_project_budgets,
    check_spend_daily,
    check_tag_allocation,
    check_tag_budgets,
    check_threshold_crossings,
)
from tests.models.dbt_runner import AS_OF, DbtFailedError, duckdb_env, read_mart, run_dbt
from tests.models.model_budgets import model_budgets
from tests.models.raw_data import make_dataset, write_raw_layer
from tests.models.reference import attributed_requests, is_enforced, money, resolved_budgets

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
    rows = len(built_duckdb.data.rows("spend_logs"))
    assert check_spend_daily(built_duckdb.path, built_duckdb.data) == rows > 3000


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


def test_model_budgets_roll_windows_like_the_proxy(built_duckdb):
    as_of = datetime.fromisoformat(AS_OF)
    assert check_model_budgets(built_duckdb.path, built_duckdb.data, as_of) > 100


def test_multi_window_budgets_have_periods_per_window(built_duckdb):
    """budget_limits: each window of a key's, team's or user's list is a budget of its own,
    aligned like an ordinary reset; the reference comparison of all periods covers their spend
    and crossings."""
    windows = {
        (r["entity_id"], r["budget_window"], r["period_kind"])
        for r in read_mart(built_duckdb.path, "fct_budget_periods")
        if r["budget_window"] is not None
    }
    assert windows >= {
        ("hash_k1", "1d", "day"),
        ("hash_k1", "30d", "month"),
        ("team_3", "1h", "seconds"),
        ("team_3", "7d", "week"),
        ("hash_k4", "1d", "day"),
        ("user_2", "1d", "day"),  # users' budget_limits, where the column exists
    }
    assert {w[:2] for w in windows} == {
        ("hash_k1", "1d"), ("hash_k1", "30d"), ("team_3", "1h"), ("team_3", "7d"),
        ("hash_k4", "1d"), ("user_2", "1d"),
    }  # fmt: skip
    crossed = {
        (r["entity_id"], r["budget_window"])
        for r in read_mart(built_duckdb.path, "fct_budget_threshold_crossings")
        if r["budget_window"] is not None and r["crossing_type"] == "max_budget"
    }
    assert ("hash_k1", "1d") in crossed
    assert ("team_3", "1h") in crossed


def test_budget_window_spend_is_reconciled_with_the_logs(built_duckdb):
    """BudgetWindowSpend rows against the logs: the log spend of the window is summed here from
    the raw rows, and each designed row gets its status."""
    rows = {
        (r["entity_id"], r["budget_window"]): r
        for r in read_mart(built_duckdb.path, "fct_budget_window_reconciliation")
    }
    assert {k: r["reconciliation_status"] for k, r in rows.items()} == {
        ("hash_k1", "1d"): "ok",
        ("hash_k1", "30d"): "drift",
        ("team_3", "7d"): "ok",
        ("team_3", "1h"): "not_aligned",
        ("team_3", "12h"): "not_configured",
    }
    day = datetime(2028, 3, 1)
    logs = built_duckdb.data.rows("spend_logs")
    k1_day = [r for r in logs if r["api_key"] == "hash_k1" and r["start_time"].date() == day.date()]
    assert rows[("hash_k1", "1d")]["log_window_spend_usd"] == sum(
        (money(r["spend"]) for r in k1_day), Decimal(0)
    )
    assert rows[("hash_k1", "1d")]["request_count"] == len(k1_day)
    month = rows[("hash_k1", "30d")]  # stored from the 2nd (reset_at - 30 days), March's period
    assert (month["window_start"], month["window_end"]) == (
        datetime(2028, 3, 2),
        datetime(2028, 4, 1),
    )
    assert Decimal("4.99") <= month["drift_usd"] <= Decimal("5.01")
    assert rows[("team_3", "1h")]["log_window_spend_usd"] is None


def test_a_rotated_key_keeps_one_identity_and_its_budgets_follow_it(built_duckdb):
    keys = {r["key_hash"]: r for r in read_mart(built_duckdb.path, "dim_keys")}
    rotated = {
        h: (r["key_identity"], r["rotated_to_key_hash"], r["rotation_evidence"])
        for h, r in keys.items()
        if r["rotated_at"] is not None
    }
    assert rotated == {
        "hash_k2_old": ("hash_k2", "hash_k2", "audit_log"),
        "hash_k4_v1": ("hash_k4", "hash_k4_v2", "audit_log"),
        "hash_k4_v2": ("hash_k4", "hash_k4", "deprecated_token"),
        "hash_k6_old": ("hash_k6", "hash_k6", "deleted_row_match"),
    }
    assert keys["hash_k7_first"]["key_identity"] == "hash_k7_first"  # deleted, re-created: not k7
    assert all(r["key_identity"] == h for h, r in keys.items() if h not in rotated)
    periods = read_mart(built_duckdb.path, "fct_budget_periods")
    assert not {r["entity_id"] for r in periods} & set(rotated)  # no budget of an old hash
    rotated_at = datetime(2028, 1, 20) + timedelta(days=45) / 2
    before = [
        r for r in periods
        if r["entity_id"] == "hash_k2" and r["budget_source"] == "key"
        and r["period_end"] is not None and r["period_end"] <= rotated_at
    ]  # fmt: skip
    assert sum(r["request_count"] for r in before) > 50  # requests made with the old hash


def test_limit_history_keeps_every_version_and_marks_periods_where_a_limit_changed(built_duckdb):
    history = read_mart(built_duckdb.path, "fct_budget_limit_history")
    gone = sorted(
        (r for r in history if r["entity_id"] == "b_gone"),
        key=lambda r: (r["valid_from"] is not None, r["valid_from"]),
    )
    assert [(r["max_budget_usd"], r["is_deleted"]) for r in gone] == [
        (Decimal(5), False),
        (None, True),
    ]
    assert gone[0]["valid_to"] == gone[1]["valid_from"]
    assert gone[1]["valid_to"] is None
    assert {r["entity_type"] for r in history} == {"budget_row", "key", "team", "team_member"}
    start = datetime(2028, 1, 20)
    week = sorted(
        (r for r in history if r["entity_id"] == "b_key_week"),
        key=lambda r: (r["valid_from"] is not None, r["valid_from"]),
    )
    # a lowering and its undoing between two snapshots, seen only in the audit log
    assert [(r["max_budget_usd"], r["evidence"]) for r in week] == [
        (Decimal(3), "snapshot"),
        (Decimal("1.5"), "audit_log"),
        (Decimal(3), "audit_log"),
        (Decimal(40), "snapshot"),
    ]
    assert [r["valid_from"] for r in week][1:] == [
        start + timedelta(days=4),
        start + timedelta(days=6),
        start + timedelta(days=10, hours=5),
    ]
    team_5 = [r for r in history if r["entity_id"] == "team_5"]
    assert [(r["valid_from"], r["valid_to"]) for r in team_5] == [(None, None)]  # alias only
    changes = {  # (entity, budget source, duration) -> when its limits changed
        ("hash_k1", "key_budget", "7d"): [
            start + timedelta(days=4),
            start + timedelta(days=6),
            start + timedelta(days=10, hours=5),
        ],
        ("hash_k2", "key", "1d"): [
            start + timedelta(minutes=5),  # the audit log dates the first snapshot's version
            start + timedelta(days=20, hours=13),
        ],
        ("team_2", "team", "1w"): [start + timedelta(days=12)],
        ("team_3", "team_budget_limits", "7d"): [start + timedelta(days=15)],
        ("team_1/user_1", "team_member_budget", "1d"): [start + timedelta(days=8, hours=14)],
    }
    expected: dict[tuple, datetime] = {}
    for (entity, source, duration), times in changes.items():
        for at in times:
            period = (entity, source, period_bounds(at, parse_duration(duration))[0])
            expected[period] = max(at, expected.get(period, at))
    expected = {(*period, at) for period, at in expected.items()}
    marked = {
        (r["entity_id"], r["budget_source"], r["period_start"], r["limit_changed_at"])
        for r in read_mart(built_duckdb.path, "fct_budget_periods")
        if r["limit_changed_at"] is not None
    }
    assert marked == expected


def test_threshold_crossings_match_reference(built_duckdb):
    assert check_threshold_crossings(built_duckdb.path, built_duckdb.data) > 100


def test_invalid_durations_are_listed_not_unlimited(built_duckdb):
    listed = {
        (r["entity_type"], r["entity_id"], r["budget_duration"])
        for r in read_mart(built_duckdb.path, "fct_budget_duration_errors")
        if r["budget_source"] != "spend_counter"
        and r["budget_model"] is None
        and not r["budget_source"].endswith("model_max_budget")
    }
    expected = {
        (b.entity_type, b.entity_id, b.duration)
        for b in resolved_budgets(built_duckdb.data)
        if not is_enforced(b)
    }
    assert listed == expected
    assert expected == {
        ("key", "hash_k7", "1d trailing"),
        ("user", "user_5", "1M"),
        ("team_member", "team_2/user_2", "2mo"),
        ("key", "hash_k4", "1d"),  # budget_limits: the same window twice
        ("key", "hash_k5", None),  # budget_limits: a window without a duration
        ("key", "hash_k5", "2mo"),  # budget_limits: an invalid duration
        ("team", "team_4", None),  # budget_limits: not a list
    }
    model_errors = sum(b.error is not None for b in model_budgets(built_duckdb.data))
    assert model_errors == 4
    warned = 6 + model_errors + 4
    assert f"WARN {warned} has_no_rows_fct_budget_duration_errors" in built_duckdb.output


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


def test_reconciliation_splits_the_hour_of_budget_as_of_request_by_request(built_duckdb, tmp_path):
    """With var budget_as_of inside an hour that has requests on both sides of it, every
    counter's log spend is the spend of its requests from window_start up to budget_as_of: the
    model sums whole hourly buckets and, one by one, only the requests of the hours a window
    boundary cuts."""
    requests = sorted(attributed_requests(built_duckdb.data), key=lambda r: r.started_at)
    day_start = datetime.fromisoformat(AS_OF).replace(hour=0)
    keyed = [r for r in requests if "key" in r.entities and r.started_at >= day_start]
    first, second = next(
        (a, b)
        for a, b in pairwise(keyed)
        if a.entities["key"] == b.entities["key"]
        and a.started_at.replace(minute=0, second=0, microsecond=0)
        == b.started_at.replace(minute=0, second=0, microsecond=0)
        and (b.started_at - a.started_at).total_seconds() > 2
    )
    as_of = (first.started_at + timedelta(seconds=1)).replace(microsecond=0)
    assert first.started_at < as_of < second.started_at
    path = tmp_path / "build.duckdb"
    shutil.copyfile(built_duckdb.path, path)
    run_dbt(
        ["run", "-s", "+fct_spend_counter_reconciliation"],
        tmp_path,
        duckdb_env(path),
        vars_yaml=f'{{budget_as_of: "{as_of.isoformat(sep=" ")}"}}',
    )
    rows = [
        r
        for r in read_mart(path, "fct_spend_counter_reconciliation")
        if r["comparison_window"] != "invalid_duration"
    ]
    kinds = {kind for r in requests for kind in r.entities}
    compared = [r for r in rows if r["entity_type"] in kinds]
    for row in compared:
        mine = [
            r
            for r in requests
            if r.entities.get(row["entity_type"]) == row["entity_id"]
            and (row["window_start"] is None or row["window_start"] <= r.started_at)
            and r.started_at <= as_of
        ]
        key = (row["entity_type"], row["entity_id"])
        assert row["log_spend_usd"] == sum((r.spend for r in mine), Decimal(0)), key
        assert row["request_count"] == len(mine), key
    cut = {("key", first.entities["key"])}
    assert cut <= {(r["entity_type"], r["entity_id"]) for r in compared}


def _percentile_cont(values: list[int], fraction: float) -> float | None:
    """percentile_cont(fraction) within group (order by value), as PostgreSQL computes it."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position // 1)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower])


def test_daily_percentiles_are_exact_when_filled_in_batches_of_days(built_duckdb, tmp_path):
    """With var percentile_batch_rows far below a day's requests, the daily spend facts leave
    their percentiles to the post-hook, which fills them one day per update, in a full build and
    in an incremental one (the last 3 days and the day after them); the result equals the build
    that computed them in the model, row for row, and the percentiles equal percentile_cont over
    each group's requests."""
    path = tmp_path / "build.duckdb"
    shutil.copyfile(built_duckdb.path, path)
    marts = ["fct_spend_daily", "fct_spend_by_tag_daily"]
    run_dbt(
        ["run", "-s", *marts, "--full-refresh"],
        tmp_path,
        duckdb_env(path),
        vars_yaml="{percentile_batch_rows: 10}",
    )
    days = {r["spend_date"] for r in read_mart(path, "fct_spend_daily")}
    log = (tmp_path / "logs" / "dbt.log").read_text()
    # An incremental build re-builds its last days the same way.
    run_dbt(
        ["run", "-s", *marts], tmp_path, duckdb_env(path), vars_yaml="{percentile_batch_rows: 10}"
    )
    rebuilt = (tmp_path / "logs" / "dbt.log").read_text()[len(log) :]
    for mart in marts:
        assert re.search(rf"fill_spend_daily_percentiles: {mart} batch 4/4 \(1 days\)", rebuilt), (
            mart
        )
        batches = re.findall(
            rf"fill_spend_daily_percentiles: {mart} batch \d+/(\d+) \(1 days\)", log
        )
        assert len(days) > 30
        assert batches == [str(len(days))] * len(days), mart
        assert sorted(read_mart(path, mart), key=repr) == sorted(
            read_mart(built_duckdb.path, mart), key=repr
        ), mart
    dimensions = [
        "spend_date", "key_hash", "team_id", "organization_id", "user_id", "end_user_id",
        "model_group", "provider",
    ]  # fmt: skip
    latencies: dict = {}
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(
            f"select {', '.join(dimensions)}, latency_ms, time_to_first_token_ms "
            "from main_intermediate.int_spend_logs_attributed"
        )
        for *group, latency, ttft in cursor.fetchall():
            latency_values, ttft_values = latencies.setdefault(tuple(group), ([], []))
            latency_values.extend([latency] if latency is not None else [])
            ttft_values.extend([ttft] if ttft is not None else [])
    rows = read_mart(path, "fct_spend_daily")
    assert len(rows) == len(latencies) > 1000
    assert sum(len(v[1]) for v in latencies.values()) > 100
    for row in rows:
        latency_values, ttft_values = latencies[tuple(row[d] for d in dimensions)]
        for column, values, fraction in [
            ("latency_p50_ms", latency_values, 0.5),
            ("latency_p95_ms", latency_values, 0.95),
            ("ttft_p50_ms", ttft_values, 0.5),
            ("ttft_p95_ms", ttft_values, 0.95),
        ]:
            expected = _percentile_cont(values, fraction)
            expected = (
                None if expected is None else Decimal(repr(expected)).quantize(Decimal("0.001"))
            )
            assert row[column] == expected, (column, row["spend_daily_id"])


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
