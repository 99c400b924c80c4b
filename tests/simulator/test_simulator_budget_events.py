"""Budget events the proxy writes: requests of capped keys refused once their period's spend
reached the key's max_budget (failure rows, BudgetExceededError), and budget limits edited in
the middle of a period (the row's new limits and updated_at, an AuditLog 'updated' row).

The expectations are recomputed here from the rows written, with calendar periods computed
independently of the simulator's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest

from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.simulator import PopulationSpec, simulate
from dagster_project.simulator.budgets import epoch_ms
from dagster_project.simulator.population import CappedKey, generate_population
from dagster_project.simulator.workload import (
    BUDGET_FAILURE_KIND,
    HOUR_MS,
    BudgetGate,
    FlushClock,
)
from tests.prefixes import BOTH_PREFIXES

END = datetime(2026, 11, 26, 18, 0)  # a Thursday
SMALL = PopulationSpec(organizations=3, teams=6, users=15, keys=24, end_users=20)


@dataclass(frozen=True)
class Db:
    url: str
    prefix: str

    def table(self, name: str) -> str:
        return '"' + self.prefix + name + '"'

    def rows(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module", params=BOTH_PREFIXES)
def simulated(request, pg_server_url):
    """Three days of traffic in a fresh latest-schema database per prefix."""
    name = f"spendwh_sim_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, name)
    try:
        apply_migrations(url, request.param)
        db = Db(url, request.param)
        result = simulate(
            db.url, db.prefix, seed=3, end=END, days=3, requests_per_day=3000, spec=SMALL
        )
        yield db, result
    finally:
        drop_database(pg_server_url, name)


def period_start(at: datetime, duration: str | None) -> datetime:
    """Start of the UTC budget period of ``duration`` containing ``at`` (calendar-aligned like
    upstream: days, weeks from Monday, months from the 1st; no duration: one endless period)."""
    if duration is None:
        return datetime.min
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if duration == "1d":
        return day
    if duration == "7d":
        return day - timedelta(days=day.weekday())
    if duration in ("30d", "1mo"):
        return day.replace(day=1)
    raise AssertionError(f"unexpected duration {duration!r}")


def first_crossing(
    requests: list[tuple[datetime, float]], limit_at: Callable[[datetime], float]
) -> datetime | None:
    """When the running spend of ``requests`` (start order) first reaches the limit in force."""
    total = 0.0
    for started, spend in requests:
        total += spend
        if total >= limit_at(started):
            return started
    return None


# --- capped keys --------------------------------------------------------------------------


@pytest.mark.integration
def test_capped_keys_refuse_every_request_once_the_period_spend_reached_the_cap(simulated):
    db, result = simulated
    pop = result.population
    capped = pop.capped_keys
    assert {c.budget_duration in ("1d", "7d") for c in capped} == {True, False}
    assert any(c.budget_duration is None for c in capped)
    for c in capped:
        hashes = list(pop.key_hashes(c.key_index))
        logs = db.rows(
            'SELECT "startTime", "endTime", status, spend, total_tokens, model_id, '
            "custom_llm_provider, metadata->'error_information'->>'error_class', "
            "metadata->'error_information'->>'error_code' "
            f"FROM {db.table('SpendLogs')} WHERE api_key = ANY(%s) "
            'ORDER BY "startTime", request_id',
            hashes,
        )
        period, spent, refused = None, 0.0, 0
        for started, ended, status, spend, tokens, model_id, provider, error, code in logs:
            if period_start(started, c.budget_duration) != period:
                period, spent = period_start(started, c.budget_duration), 0.0
            is_refused = error == "BudgetExceededError"
            # refused exactly when the period's charged spend before it is at or over the cap
            assert is_refused == (spent >= c.max_budget), (c, started, spent)
            if is_refused:
                refused += 1
                assert (status, spend, tokens, ended, code) == ("failure", 0, 0, started, "400")
                assert (model_id, provider) == ("", "")
            spent += spend
        assert refused == c.rejected > 0, c
        # the counter is the current period's charged spend, the cap is the one fixed up front
        live = db.rows(
            f"SELECT spend, max_budget FROM {db.table('VerificationToken')} WHERE token = %s",
            hashes[-1],
        )
        current = sum(
            spend
            for started, _, _, spend, *_ in logs
            if started >= period_start(result.end, c.budget_duration)
        )
        assert live[0][0] == pytest.approx(current, abs=1e-12)
        assert live[0][1] == c.max_budget
        assert pop.keys[c.key_index].max_budget == c.max_budget
        if c.budget_duration is None:  # one endless period: over the cap for good
            assert current >= c.max_budget
    assert pop.rejected_requests == sum(c.rejected for c in capped)


@pytest.mark.integration
def test_refused_requests_book_no_spend_and_count_as_failures_daily(simulated):
    db, result = simulated
    pop = result.population
    hashes = [h for c in pop.capped_keys for h in pop.key_hashes(c.key_index)]
    refused = dict(
        db.rows(
            f'SELECT "startTime"::date::text, count(*) FROM {db.table("SpendLogs")} '
            "WHERE metadata->'error_information'->>'error_class' = 'BudgetExceededError' "
            "AND api_key = ANY(%s) GROUP BY 1",
            hashes,
        )
    )
    assert sum(refused.values()) == pop.rejected_requests > 0
    # The daily rows of refused requests (no provider: refused before a deployment was picked):
    # every request a failure, no spend, no tokens.
    daily = {
        r[0]: r[1:]
        for r in db.rows(
            "SELECT date, sum(api_requests), sum(failed_requests), sum(successful_requests), "
            "sum(spend), sum(prompt_tokens + completion_tokens) "
            f"FROM {db.table('DailyUserSpend')} "
            "WHERE api_key = ANY(%s) AND custom_llm_provider = '' GROUP BY 1",
            hashes,
        )
    }
    assert daily == {day: (n, n, 0, 0.0, 0) for day, n in refused.items()}
    errors = db.rows(
        f"SELECT status_code, api_base, model_id, count(*) FROM {db.table('ErrorLogs')} "
        "WHERE exception_type = 'BudgetExceededError' GROUP BY 1, 2, 3"
    )
    assert errors == [("400", "", "", pop.rejected_requests)]


def test_budget_gate_refuses_after_the_cap_and_starts_again_each_period():
    """The gate on hand-made requests: the request reaching the cap is served, the later ones of
    the period refused (start order, not row order); a new day starts from zero; a request whose
    row is flushed after the run's end is not charged; other keys pass untouched."""
    clock = FlushClock(1)
    day = epoch_ms(datetime(2026, 11, 26))
    start = np.array([day + 5 * HOUR_MS, day + HOUR_MS, day + 2 * HOUR_MS, day + 3 * HOUR_MS,
                      day + 4 * HOUR_MS, day + 25 * HOUR_MS, day + 26 * HOUR_MS])  # fmt: skip
    n = len(start)
    batch = {
        "key": np.array([0, 0, 0, 0, 1, 0, 0]),
        "spend": np.array([0.5, 0.4, 0.7, 0.3, 9.0, 1.2, 0.1]),
        "failure_kind": np.array([-1, -1, -1, 0, -1, -1, -1]),
        "cache_hit": np.array([False, False, False, False, False, False, True]),
        "prompt_tokens": np.full(n, 10),
        "completion_tokens": np.full(n, 5),
        "start_ms": start,
        "end_ms": start + 800,
        "completion_start_ms": start + 300,
        "instance": np.zeros(n, dtype=np.int64),
    }
    gate = BudgetGate((CappedKey(0, "1d", max_budget=1.0),), clock)
    out = gate.apply(batch)
    refused = out["failure_kind"] == BUDGET_FAILURE_KIND
    # by start: 0.4 (1h), 0.7 (2h: reaches 1.1, served), then 3h and 5h refused; key 1 untouched;
    # next day: 1.2 served (reaches the cap), the cache hit after it refused
    assert refused.tolist() == [True, False, False, True, False, False, True]
    assert out["spend"].tolist() == [0.0, 0.4, 0.7, 0.0, 9.0, 1.2, 0.0]
    assert (out["end_ms"][refused] == start[refused]).all()
    assert (out["prompt_tokens"][refused] == 0).all()
    assert not out["cache_hit"][refused].any()
    assert (out["end_ms"][~refused] == batch["end_ms"][~refused]).all()
    gate.count_written(out)
    assert gate.rejected_written == {0: 3}

    # a row still queued at the end of the run is not charged: nothing is refused after it
    queued = BudgetGate((CappedKey(0, "1d", max_budget=1.0),), clock, written_before_ms=day)
    assert not (queued.apply(batch)["failure_kind"] == BUDGET_FAILURE_KIND).any()


def test_capped_keys_are_drawn_per_seed():
    start = END - timedelta(days=30)
    a, b = generate_population(3, start, END), generate_population(3, start, END)
    assert a.capped_keys == b.capped_keys
    assert [c.budget_duration for c in a.capped_keys] in (["1d", None], ["7d", None])
    for c in a.capped_keys:
        key = a.keys[c.key_index]
        assert key.deleted_at is None
        assert key.created_at <= start
        assert (key.profile, key.budget_duration) == ("over", c.budget_duration)
        if key.budget_id:
            assert a.budget(key.budget_id).budget_duration == c.budget_duration
    others = [generate_population(s, start, END).capped_keys for s in range(4, 8)]
    assert any([c.key_index for c in o] != [c.key_index for c in a.capped_keys] for o in others)


# --- limit changes ------------------------------------------------------------------------


def _limited_requests(db: Db, pop, change) -> list[tuple[datetime, float]]:
    """(start, spend) of the requests counting against the changed row, in start order: the
    key's, the team's, or those of the tag or project holding the budget row."""
    if change.table == "VerificationToken":
        where, arg = "api_key = %s", change.entity_id
    elif change.table == "TeamTable":
        where, arg = "team_id = %s", change.entity_id
    elif tag := next((t for t in pop.tags if t.budget_id == change.entity_id), None):
        where, arg = "request_tags ? %s", tag.tag_name
    else:
        project = next(p for p in pop.projects if p.budget_id == change.entity_id)
        where = "api_key = ANY(%s)"
        arg = [h for i, k in enumerate(pop.keys) if k.project_id == project.project_id
               for h in pop.key_hashes(i)]  # fmt: skip
    return db.rows(
        f'SELECT "startTime", spend FROM {db.table("SpendLogs")} WHERE {where} '
        'ORDER BY "startTime", request_id',
        arg,
    )


_ROW_SQL = {
    "VerificationToken": ("token", "NULL::float8"),
    "TeamTable": ("team_id", "soft_budget"),
    "BudgetTable": ("budget_id", "soft_budget"),
}


@pytest.mark.integration
def test_limit_changes_are_written_with_the_new_limits_and_an_audit_row(simulated):
    db, result = simulated
    pop = result.population
    changes = pop.limit_changes
    assert sorted(c.table for c in changes) == ["BudgetTable", "TeamTable", "VerificationToken"]
    assert pop.audit_logging
    assert all(c.audited for c in changes)
    audit = {
        r[0]: r[1:]
        for r in db.rows(
            "SELECT object_id, id, table_name, updated_at, before_value, updated_values, "
            f"changed_by FROM {db.table('AuditLog')} WHERE action = 'updated'"
        )
    }
    assert set(audit) == {c.entity_id for c in changes}
    for c in changes:
        id_column, soft = _ROW_SQL[c.table]
        ((max_budget, soft_budget, updated_at, created_at, duration, reset_at),) = db.rows(
            f"SELECT max_budget, {soft}, updated_at, created_at, budget_duration, "
            f"budget_reset_at FROM {db.table(c.table)} WHERE {id_column} = %s",
            c.entity_id,
        )
        # the row carries the current limits, stamped with the change
        assert (max_budget, soft_budget) == (c.new_max_budget, c.new_soft_budget)
        assert updated_at == c.changed_at
        assert duration == c.budget_duration
        # inside the row's current period, after its creation, before the end and the reset
        assert period_start(result.end, duration) <= c.changed_at < result.end < reset_at
        assert c.changed_at > created_at
        # the audit row: the row before (old limits), the changed limits after
        row_id, table_name, at, before, after, changed_by = audit[c.entity_id]
        assert (row_id, table_name, at) == (c.audit_row_id, f"{db.prefix}{c.table}", c.changed_at)
        assert changed_by
        assert before[id_column] == c.entity_id
        assert before["max_budget"] == c.old_max_budget != c.new_max_budget
        assert before.get("soft_budget") == c.old_soft_budget
        assert before["budget_duration"] == duration
        assert datetime.fromisoformat(before["created_at"]) == created_at
        assert datetime.fromisoformat(before["updated_at"]) < c.changed_at
        assert after["max_budget"] == c.new_max_budget
        assert after.get("soft_budget", c.old_soft_budget) == c.new_soft_budget
        assert json.loads(json.dumps(before)) == before


@pytest.mark.integration
def test_limit_changes_move_the_crossing_of_the_max_budget(simulated):
    """Measured against the limit in force when each request was made, the current period's
    max-budget crossing differs from the one found with the current limit alone."""
    db, result = simulated
    pop = result.population
    directions = set()
    for c in pop.limit_changes:
        since = period_start(result.end, c.budget_duration)
        requests = [(t, s) for t, s in _limited_requests(db, pop, c) if since <= t < result.end]
        assert any(t < c.changed_at for t, _ in requests), c
        current = first_crossing(requests, lambda _t, c=c: c.new_max_budget)
        in_force = first_crossing(
            requests,
            lambda t, c=c: c.old_max_budget if t < c.changed_at else c.new_max_budget,
        )
        assert current != in_force, c
        if c.new_max_budget < c.old_max_budget:
            directions.add("lowered")
            assert current is not None
            assert current < c.changed_at
            assert in_force is None or in_force >= c.changed_at
        else:
            directions.add("raised")
            assert current is None
            assert in_force is not None
            assert in_force < c.changed_at
    assert directions == {"lowered", "raised"}
