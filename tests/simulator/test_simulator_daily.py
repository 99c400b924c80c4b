"""The simulator's daily aggregate tables: filled from the same payload as the spend logs, and
parted from them (retention, disabled spend logs, a lost flush) when asked, so that the
warehouse's fct_daily_spend_reconciliation classifies every difference."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

import duckdb
import pytest

from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest.extract import extract_fact, extract_snapshots
from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.source import SPEND_LOGS, SourceSession
from dagster_project.simulator import DailyDifferences, PopulationSpec, simulate
from tests.models.dbt_runner import duckdb_env, run_dbt

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 26, 18, 0)
SMALL = PopulationSpec(organizations=3, teams=6, users=15, keys=24, end_users=20)

# The proxy's rules, as SQL over SpendLogs: (kind, daily table, entity column, log expression,
# condition on the log row).
RULES = [
    ("user", "DailyUserSpend", "user_id", '"user"', "true"),
    ("team", "DailyTeamSpend", "team_id", "team_id", "team_id <> ''"),
    ("organization", "DailyOrganizationSpend", "organization_id", "organization_id",
     "organization_id <> ''"),
    ("end_user", "DailyEndUserSpend", "end_user_id", "end_user", "end_user <> ''"),
]  # fmt: skip


def _log_totals(conn, source, expression: str, condition: str) -> dict:
    rows = conn.execute(
        f"select {expression}, to_char(\"startTime\", 'YYYY-MM-DD'), count(*), "
        "sum(case when status = 'failure' then 1 else 0 end), sum(spend), "
        "sum(prompt_tokens), sum(completion_tokens) "
        f"from {source.table('SpendLogs')} where {condition} group by 1, 2"
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _daily_totals(conn, source, table: str, column: str) -> dict:
    rows = conn.execute(
        f"select {column}, date, sum(api_requests), sum(failed_requests), sum(spend), "
        "sum(prompt_tokens), sum(completion_tokens), "
        "sum(api_requests - successful_requests - failed_requests) "
        f"from {source.table(table)} group by 1, 2"
    ).fetchall()
    assert all(r[7] == 0 for r in rows), f"{table}: successes + failures != requests"
    return {(r[0], r[1]): r[2:7] for r in rows}


def _assert_equal(daily: dict, logs: dict, what: str) -> None:
    assert daily.keys() == logs.keys(), what
    for grain, (requests, failed, spend, prompt, completion) in logs.items():
        d_requests, d_failed, d_spend, d_prompt, d_completion = daily[grain]
        assert (d_requests, d_failed, d_prompt, d_completion) == (
            requests,
            failed,
            prompt,
            completion,
        ), (what, grain)
        assert d_spend == pytest.approx(spend, abs=1e-9), (what, grain)


def test_daily_tables_follow_the_proxy_rules_on_the_spend_logs(make_source):
    source = make_source()
    result = simulate(
        source.url, source.prefix, seed=8, end=END, days=3, requests_per_day=2000, spec=SMALL
    )
    assert result.spend_logs > 4000
    with source.connect() as conn:
        for kind, table, column, expression, condition in RULES:
            logs = _log_totals(conn, source, expression, condition)
            assert logs, kind
            _assert_equal(_daily_totals(conn, source, table, column), logs, kind)
        # Tags: every element of request_tags (User-Agent tags included) with the full cost.
        tag_logs = {
            (r[0], r[1]): r[2:]
            for r in conn.execute(
                "select tag, to_char(l.\"startTime\", 'YYYY-MM-DD'), count(*), "
                "sum(case when status = 'failure' then 1 else 0 end), sum(spend), "
                "sum(prompt_tokens), sum(completion_tokens) "
                f"from {source.table('SpendLogs')} as l "
                "cross join lateral jsonb_array_elements_text(l.request_tags) as t(tag) "
                "group by 1, 2"
            ).fetchall()
        }
        assert any(tag.startswith("User-Agent") for tag, _ in tag_logs)
        _assert_equal(_daily_totals(conn, source, "DailyTagSpend", "tag"), tag_logs, "tag")
        # No team, organization or end-user row without an id; user rows of keyless requests.
        for table, column in [
            ("DailyTeamSpend", "team_id"),
            ("DailyOrganizationSpend", "organization_id"),
            ("DailyEndUserSpend", "end_user_id"),
        ]:
            empty = conn.execute(
                f"select count(*) from {source.table(table)} where coalesce({column}, '') = ''"
            ).fetchone()[0]
            assert empty == 0, table
        keyless = conn.execute(
            f"select count(*) from {source.table('DailyUserSpend')} where user_id = ''"
        ).fetchone()[0]
        assert keyless > 0
        # Rows are stamped with their first and last flush.
        bad = conn.execute(
            f"select count(*) from {source.table('DailyUserSpend')} "
            "where updated_at < created_at or created_at::date < date::date"
        ).fetchone()[0]
        assert bad == 0


def test_differences_are_simulated_and_classified_by_the_warehouse(make_source, tmp_path):
    source = make_source()
    start = END - timedelta(days=10)
    differences = DailyDifferences.spread_over(start, END)
    simulate(
        source.url,
        source.prefix,
        seed=9,
        end=END,
        days=10,
        rows=6000,
        spec=SMALL,
        daily_differences=differences,
    )
    retention = differences.retention_until
    off_from, off_until = differences.logs_disabled
    with source.connect() as conn:
        first_log = conn.execute(
            f'select min("startTime") from {source.table("SpendLogs")}'
        ).fetchone()[0]
        disabled_logs = conn.execute(
            f"select count(*) from {source.table('SpendLogs')} "
            'where "startTime" >= %s and "startTime" < %s',
            (off_from, off_until),
        ).fetchone()[0]
    assert first_log >= retention
    assert disabled_logs == 0

    build = tmp_path / "state" / "build.duckdb"
    with SourceSession(source.url, source.prefix) as session, connect_writer(build) as con:
        extract_fact(session, con, Lake(tmp_path / "lake"), SPEND_LOGS)
        extract_snapshots(session, con, Lake(tmp_path / "lake"), progress=lambda _msg: None)
    # `build`: the check (has_no_rows on unexplained rows) must pass on these differences.
    output = run_dbt(
        ["build", "--select", "+fct_daily_spend_reconciliation"], tmp_path, duckdb_env(build)
    )
    assert "has_no_rows_fct_daily_spend_reconciliation" in output

    with duckdb.connect(str(build), read_only=True) as conn:
        rows = conn.execute(
            "select entity_type, spend_date, reconciliation_class, daily_spend_usd, log_spend_usd, "
            "daily_request_count, log_request_count from main.fct_daily_spend_reconciliation"
        ).fetchall()
    by_class: dict[str, list] = defaultdict(list)
    for row in rows:
        by_class[row[2]].append(row)
    assert set(by_class) >= {
        "match",
        "tag_fan_out",
        "spend_log_retention",
        "spend_logs_disabled",
        "lost_batch",
    }
    assert "unexplained" not in by_class
    # Each class only where the scenario put it.
    assert all(day <= retention.date() for _, day, *_ in by_class["spend_log_retention"])
    disabled_days = _days(off_from, off_until)
    assert {day for _, day, *_ in by_class["spend_logs_disabled"]} <= disabled_days
    lost_days = _days(*differences.lost_flushes)
    for _, day, _, daily, logged, daily_requests, log_requests in by_class["lost_batch"]:
        assert day in lost_days
        assert daily_requests < log_requests or daily < logged
    assert {kind for kind, *_ in by_class["tag_fan_out"]} == {"tag"}
    # Every day before the retention horizon: all its daily rows are explained by retention.
    early = [r for r in rows if r[1] < retention.date()]
    assert early
    assert {r[2] for r in early} == {"spend_log_retention"}


def _days(start: datetime, end: datetime) -> set[date]:
    days, day = set(), start.date()
    while day <= end.date():
        days.add(day)
        day += timedelta(days=1)
    return days
