"""Assertions shared by the mart tests: marts against Python computations from raw rows."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from tests.models.budget_periods import parse_duration, period_bounds
from tests.models.dbt_runner import read_mart
from tests.models.model_budgets import model_budget_windows, model_budgets
from tests.models.raw_data import RawDataset
from tests.models.reference import (
    attributed_requests,
    budget_periods,
    is_enforced,
    money,
    request_project,
    resolved_budgets,
)

THRESHOLDS = [85, 95]


def raw_dataset_from(path: Path) -> RawDataset:
    """Every table of schema ``raw`` in the DuckDB file, as rows (what dbt read)."""
    data = RawDataset()
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall()
        for (table,) in tables:
            cursor = conn.execute(f'select * from raw."{table}"')
            columns = [d[0] for d in cursor.description]
            data.tables[table] = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    return data


def check_spend_daily(path: Path, data: RawDataset) -> int:
    """fct_spend_daily per UTC day equals the raw rows; returns the number of requests."""
    expected: dict = defaultdict(Counter)
    spend: dict = defaultdict(Decimal)
    for row in data.rows("spend_logs"):
        day = row["start_time"].date()
        expected[day]["requests"] += 1
        expected[day]["failed"] += row["status"] == "failure"
        expected[day]["cache_hits"] += row["cache_hit"] == "True"
        expected[day]["tokens"] += row["total_tokens"]
        spend[day] += money(row["spend"])
    actual: dict = defaultdict(Counter)
    actual_spend: dict = defaultdict(Decimal)
    for row in read_mart(path, "fct_spend_daily"):
        day = row["spend_date"]
        actual[day]["requests"] += row["request_count"]
        actual[day]["failed"] += row["failed_request_count"]
        actual[day]["cache_hits"] += row["cache_hit_count"]
        actual[day]["tokens"] += row["total_tokens"]
        actual_spend[day] += row["spend_usd"]
    assert actual == expected
    assert actual_spend == spend
    return sum(c["requests"] for c in expected.values())


def check_tag_allocation(path: Path, data: RawDataset) -> None:
    """Allocated tag spend sums to daily spend; per-tag request counts match the raw tags."""
    daily: dict = defaultdict(Decimal)
    for row in read_mart(path, "fct_spend_daily"):
        daily[row["spend_date"]] += row["spend_usd"]
    allocated: dict = defaultdict(Decimal)
    tag_requests: Counter = Counter()
    for row in read_mart(path, "fct_spend_by_tag_daily"):
        allocated[row["spend_date"]] += row["allocated_spend_usd"]
        tag_requests[row["tag"]] += row["request_count"]
    assert allocated == daily
    expected: Counter = Counter()
    for row in data.rows("spend_logs"):
        tags = {t for t in json.loads(row["request_tags"] or "[]") if t}
        for tag in tags or {None}:
            expected[tag] += 1
    assert tag_requests == expected


def _ident(row: dict) -> tuple:
    return (row["entity_type"], row["entity_id"], row["budget_source"], row["budget_window"])


def check_budget_periods(path: Path, data: RawDataset, tz: str = "UTC") -> int:
    """fct_budget_periods equals the reference periods; returns the periods compared."""
    requests = attributed_requests(data)
    budgets = [b for b in resolved_budgets(data) if is_enforced(b)]
    rows = [r for r in read_mart(path, "fct_budget_periods") if r["budget_model"] is None]
    by_key = {(*_ident(r), r["period_start"]): r for r in rows}
    assert {_ident(r) for r in rows} == {b.ident for b in budgets}
    checked = 0
    for budget in budgets:
        periods = budget_periods(budget, requests, tz, THRESHOLDS)
        with_spend = {
            r["period_start"] for r in rows if _ident(r) == budget.ident and r["request_count"] > 0
        }
        assert with_spend == set(periods), budget
        duration = parse_duration(budget.duration)
        for start, period in periods.items():
            row = by_key[(*budget.ident, start)]
            assert row["period_spend_usd"] == period.spend
            assert row["request_count"] == period.requests
            assert row["soft_budget_crossed_at"] == period.soft_crossed_at
            assert row["max_budget_crossed_at"] == period.max_crossed_at
            if duration.kind != "open":
                bounds = period_bounds(start, duration, tz, budget.anchor)
                assert (row["period_start"], row["period_end"]) == bounds
            checked += 1
    return checked


def check_threshold_crossings(path: Path, data: RawDataset, tz: str = "UTC") -> int:
    """fct_budget_threshold_crossings equals the reference crossings; returns their number."""
    requests = attributed_requests(data)
    expected = set()
    for budget in resolved_budgets(data):
        if not is_enforced(budget):
            continue
        for start, period in budget_periods(budget, requests, tz, THRESHOLDS).items():
            for limit, at, cumulative in period.crossings.values():
                expected.add((*budget.ident, start, limit.normalize(), at, cumulative))
    actual = {
        (
            *_ident(r),
            r["period_start"],
            r["threshold_usd"].normalize(),
            r["crossed_at"],
            r["period_spend_at_crossing_usd"],
        )
        for r in read_mart(path, "fct_budget_threshold_crossings")
        if r["budget_model"] is None
    }
    assert actual == expected
    return len(actual)


def check_current_periods(path: Path, as_of: datetime) -> None:
    """Every calendar budget has exactly one current period, containing the evaluation instant;
    a per-model budget at most one (none when its last window has ended)."""
    rows = read_mart(path, "fct_budget_periods")
    rolling = Counter(
        (r["entity_type"], r["entity_id"], r["budget_source"], r["budget_model"])
        for r in rows
        if r["is_current_period"] and r["budget_model"] is not None
    )
    assert set(rolling.values()) <= {1}
    rows = [r for r in rows if r["budget_model"] is None]
    current = Counter(_ident(r) for r in rows if r["is_current_period"])
    assert set(current.values()) == {1}
    for row in rows:
        if row["is_current_period"] and row["period_end"] is not None:
            assert row["period_start"] <= as_of < row["period_end"]
            assert row["projected_period_spend_usd"] >= row["period_spend_usd"]
            assert row["projection_basis_days"] is not None


def _check_full_cost_periods(
    periods: list[dict], holder: str, budget: dict, requests: list[dict]
) -> int:
    """One budget holder's periods against ``requests`` (each at its full cost): spend, count
    and the exact request that reached the max budget, per period. Returns periods compared."""
    duration = parse_duration(budget["budget_duration"])
    spend: dict = defaultdict(Decimal)
    count: Counter = Counter()
    crossed: dict = {}
    limit = money(budget["max_budget"])
    mine = sorted(requests, key=lambda r: (r["start_time"], r["request_id"]))
    for row in mine:
        start, _ = period_bounds(row["start_time"], duration, "UTC", budget["created_at"])
        spend[start] += money(row["spend"])
        count[start] += 1
        if start not in crossed and spend[start] >= limit:
            crossed[start] = row["start_time"]
    rows = {r["period_start"]: r for r in periods if r["entity_id"] == holder}
    assert {s for s, r in rows.items() if r["request_count"] > 0} == set(spend), holder
    for start, total in spend.items():
        assert rows[start]["period_spend_usd"] == total, (holder, start)
        assert rows[start]["request_count"] == count[start], (holder, start)
        assert rows[start]["max_budget_crossed_at"] == crossed.get(start), (holder, start)
    if not mine:
        assert [r["request_count"] for r in rows.values()] == [0], holder
    return len(spend)


def check_tag_budgets(path: Path, data: RawDataset) -> int:
    """Tag budgets from first principles: only tags with a TagTable row and an existing budget
    row have periods; every request carrying the tag counts with its full cost (a request with
    two budgeted tags counts in full for both); crossings are the exact request that reached the
    limit. Returns the number of tag periods with spend compared."""
    budgets = {b["budget_id"]: b for b in data.rows("budgets")}
    budgeted = {t["tag_name"]: budgets[t["budget_id"]] for t in data.rows("tags")
                if t["budget_id"] in budgets}  # fmt: skip
    periods = [r for r in read_mart(path, "fct_budget_periods") if r["entity_type"] == "tag"]
    assert {r["entity_id"] for r in periods} == set(budgeted)
    assert {r["budget_source"] for r in periods} == {"tag_budget"}
    carried = [
        (row, {t for t in json.loads(row["request_tags"] or "[]") if t})
        for row in data.rows("spend_logs")
    ]
    both = [row for row, tags in carried if {"prod", "batch"} <= tags and row["spend"] > 0]
    assert both, "the dataset has requests carrying two budgeted tags"
    compared = 0
    for tag, budget in budgeted.items():
        # the full cost, whatever the other tags
        mine = [row for row, tags in carried if tag in tags]
        compared += _check_full_cost_periods(periods, tag, budget, mine)
    first = both[0]
    for tag in ("prod", "batch"):
        start, _ = period_bounds(
            first["start_time"], parse_duration(budgeted[tag]["budget_duration"]), "UTC",
            budgeted[tag]["created_at"],
        )  # fmt: skip
        row = next(r for r in periods if r["entity_id"] == tag and r["period_start"] == start)
        assert row["period_spend_usd"] >= money(first["spend"])
    crossings = {
        r["entity_id"]
        for r in read_mart(path, "fct_budget_threshold_crossings")
        if r["entity_type"] == "tag" and r["crossing_type"] == "max_budget"
    }
    assert crossings == {"prod", "batch"}
    return compared


def check_project_budgets(path: Path, data: RawDataset) -> int:
    """Project budgets from first principles: only projects with a ProjectTable row and an
    existing budget row have periods; a request counts with its full cost for the project of its
    key (the live key, else the key's deleted copy); crossings are the exact request that reached
    the limit; the project's spend counter is reconciled. Returns the number of project periods
    with spend compared."""
    budgets = {b["budget_id"]: b for b in data.rows("budgets")}
    budgeted = {p["project_id"]: budgets[p["budget_id"]] for p in data.rows("projects")
                if p["budget_id"] in budgets}  # fmt: skip
    project_of = {k["token"]: k["project_id"] for k in data.rows("deleted_verification_tokens")}
    project_of.update({k["token"]: k["project_id"] for k in data.rows("verification_tokens")})
    periods = [r for r in read_mart(path, "fct_budget_periods") if r["entity_type"] == "project"]
    assert {r["entity_id"] for r in periods} == set(budgeted)
    assert {r["budget_source"] for r in periods} == {"project_budget"}
    aliases = {p["project_id"]: p["project_alias"] or p["project_id"]
               for p in data.rows("projects")}  # fmt: skip
    assert all(r["entity_alias"] == aliases[r["entity_id"]] for r in periods)
    live = {k["token"] for k in data.rows("verification_tokens")}
    deleted_key_requests = [
        row for row in data.rows("spend_logs")
        if row["api_key"] not in live and project_of.get(row["api_key"]) in budgeted
    ]  # fmt: skip
    assert deleted_key_requests, "the dataset has requests of a deleted key in a budgeted project"
    compared = 0
    keys = {k["token"]: k for k in data.rows("deleted_verification_tokens")}
    keys.update({k["token"]: k for k in data.rows("verification_tokens")})
    logs = data.rows("spend_logs")
    named = [r for r in logs if "user_api_key_project_id" in (r["metadata"] or "")]
    assert named, "the dataset has requests whose metadata names their project"
    flattened = [r for r in logs if r.get("meta_project_id")]
    assert flattened, "the dataset has requests whose project the extraction flattened"
    for project, budget in budgeted.items():
        mine = [
            r
            for r in data.rows("spend_logs")
            if request_project(r, keys.get(r["api_key"], {})) == project
        ]
        compared += _check_full_cost_periods(periods, project, budget, mine)
    crossings = {
        r["entity_id"]
        for r in read_mart(path, "fct_budget_threshold_crossings")
        if r["entity_type"] == "project" and r["crossing_type"] == "max_budget"
    }
    assert crossings == {"proj_a", "proj_b"}
    reconciled = {
        r["entity_id"]: r
        for r in read_mart(path, "fct_spend_counter_reconciliation")
        if r["entity_type"] == "project"
    }
    assert set(reconciled) == set(budgeted)
    assert reconciled["proj_idle"]["log_spend_usd"] == 0
    return compared


def check_model_budgets(path: Path, data: RawDataset, as_of: datetime) -> int:
    """Per-model budgets against the reference (tests/models/model_budgets.py): every valid entry's
    rolling windows with their bounds, spend, request count and the exact crossing requests, the
    current window, and every entry that cannot be enforced listed with its reason. Returns the
    number of windows compared."""
    budgets = model_budgets(data)
    expected = model_budget_windows(data, THRESHOLDS)
    rows = [r for r in read_mart(path, "fct_budget_periods") if r["budget_model"] is not None]
    ident = ("entity_type", "entity_id", "budget_source", "budget_model", "period_start")
    by_key = {tuple(r[c] for c in ident): r for r in rows}
    assert len(by_key) == len(rows)
    want = {
        (b.entity_type, b.entity_id, b.budget_source, b.model, w.start): (b, w)
        for b, windows in expected.items()
        for w in windows
    }
    assert set(by_key) == set(want)
    crossings = set()
    for key, (budget, window) in want.items():
        row = by_key[key]
        assert row["period_end"] == window.end, key
        assert row["period_kind"] == ("open" if window.end is None else "rolling"), key
        assert row["max_budget_usd"] == budget.limit, key
        assert row["period_spend_usd"] == window.spend, key
        assert row["request_count"] == window.requests, key
        assert row["first_request_at"] == window.first_at, key
        assert row["last_request_at"] == window.last_at, key
        crossed = window.crossings.get(("max_budget", None), (None, None))
        assert row["max_budget_crossed_at"] == crossed[1], key
        assert row["is_current_period"] == (
            window.start <= as_of and (window.end is None or as_of < window.end)
        ), key
        for limit, at, cumulative in window.crossings.values():
            crossings.add((*key, limit.normalize(), at, cumulative))
    actual = {
        (*(r[c] for c in ident), r["threshold_usd"].normalize(), r["crossed_at"],
         r["period_spend_at_crossing_usd"])
        for r in read_mart(path, "fct_budget_threshold_crossings")
        if r["budget_model"] is not None
    }  # fmt: skip
    assert actual == crossings
    listed = {
        (r["entity_type"], r["entity_id"], r["budget_source"], r["budget_model"])
        for r in read_mart(path, "fct_budget_duration_errors")
        if r["budget_source"].endswith("model_max_budget")
    }
    assert listed == {
        (b.entity_type, b.entity_id, b.budget_source, b.model) for b in budgets if b.error
    }
    return len(want)
