"""The SQLite alert ledger: one row per breach, first detection kept, outbox queued atomically."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from dagster_project.lib.alerts.ledger import (
    connect_ledger,
    connect_ledger_readonly,
    get_meta,
    load_alerts,
    record_evaluation,
    record_health_problems,
)
from dagster_project.lib.alerts.records import BudgetCrossing, BudgetPeriod, HealthProblem
from dagster_project.lib.alerts.rules import decide_alerts
from tests.alerts.designed import EXPECTED, NOW, alert_signature, crossing, designed_marts


def _decide(now=NOW, extra_crossings=()):
    periods, crossings = designed_marts()
    by_id = {p["budget_period_id"]: p for p in periods}
    crossings = [*crossings, *(c(by_id) for c in extra_crossings)]
    joined = [
        {
            **c,
            "budget_source": by_id[c["budget_period_id"]]["budget_source"],
            "budget_id": by_id[c["budget_period_id"]]["budget_id"],
        }
        for c in crossings
    ]
    current = [BudgetPeriod.from_row(p) for p in periods if p["is_current_period"]]
    return decide_alerts([BudgetCrossing.from_row(row) for row in joined], current, now)


def _late_user_max(by_id):
    """A late spend row that takes user u-1 over its October max budget."""
    oct_period = next(
        p for p in by_id.values() if p["entity_id"] == "u-1" and not p["is_current_period"]
    )
    return crossing(oct_period, "max_budget", "2026-10-31 20:00", "100.2")


@pytest.fixture
def ledger(tmp_path):
    conn = connect_ledger(tmp_path / "alerts.sqlite")
    yield conn
    conn.close()


def _outbox(conn):
    return conn.execute("select message_id, destination, status from outbox").fetchall()


def test_first_evaluation_records_everything_and_queues_only_open_periods(ledger):
    alerts = _decide()
    result = record_evaluation(ledger, alerts, ["slack", "webhook"], NOW)
    stored = load_alerts(ledger)
    assert {alert_signature(a) for a in stored} == EXPECTED
    # Closed periods found on the very first evaluation are history: recorded, never sent.
    closed = [a for a in alerts if a.is_late]
    assert result.history == len(closed) == 6
    assert result.queued == len(EXPECTED) - 6
    assert len(_outbox(ledger)) == 2 * result.queued
    assert get_meta(ledger, "armed_at") == get_meta(ledger, "last_evaluated_at")


def test_re_evaluation_changes_nothing(ledger):
    record_evaluation(ledger, _decide(), ["webhook"], NOW)
    before = [dict(r) for r in ledger.execute("select * from alerts order by alert_id")]
    outbox_before = _outbox(ledger)
    later = NOW + timedelta(hours=6)
    result = record_evaluation(ledger, _decide(now=later), ["webhook"], later)
    after = [dict(r) for r in ledger.execute("select * from alerts order by alert_id")]
    assert result.new_alert_ids == []
    assert result.existing == len(EXPECTED)
    assert after == before  # detected_at, is_late, message: all kept from the first detection
    assert _outbox(ledger) == outbox_before


def test_late_row_in_closed_period_gives_one_late_alert_that_is_sent(ledger):
    record_evaluation(ledger, _decide(), ["webhook"], NOW)
    later = NOW + timedelta(hours=1)
    result = record_evaluation(
        ledger, _decide(now=later, extra_crossings=[_late_user_max]), ["webhook"], later
    )
    assert len(result.new_alert_ids) == 1
    [late] = [a for a in load_alerts(ledger) if a.alert_id == result.new_alert_ids[0]]
    assert (late.entity_id, late.alert_type, late.is_late) == ("u-1", "max_budget", True)
    assert late.detected_at == later
    assert (late.alert_id, "webhook", "pending") in [tuple(r) for r in _outbox(ledger)]
    again = record_evaluation(
        ledger, _decide(now=later, extra_crossings=[_late_user_max]), ["webhook"], later
    )
    assert again.new_alert_ids == []


def test_without_destination_alerts_are_recorded_not_queued(ledger):
    result = record_evaluation(ledger, _decide(), [], NOW)
    assert len(load_alerts(ledger)) == len(EXPECTED)
    assert result.queued == 0
    assert _outbox(ledger) == []
    kinds = {r[0] for r in ledger.execute("select notification from alerts")}
    assert kinds == {"history", "no_destination"}


def test_primary_key_refuses_a_second_row_for_one_alert(ledger):
    record_evaluation(ledger, _decide(), [], NOW)
    row = ledger.execute("select * from alerts limit 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        ledger.execute(f"insert into alerts values ({','.join('?' * len(row))})", tuple(row))


def test_health_events_are_edge_triggered_and_resolved_by_a_healthy_run(ledger):
    stale = HealthProblem("check:raw:freshness", "raw data is 3 h old")
    first = record_health_problems(ledger, [stale], "msg", ["slack"], NOW)
    again = record_health_problems(ledger, [stale], "msg", ["slack"], NOW + timedelta(minutes=15))
    assert len(first) == 1
    assert again == []
    assert len(_outbox(ledger)) == 1
    result = record_evaluation(ledger, [], ["slack"], NOW + timedelta(minutes=30))
    assert result.resolved_health_events == 1
    reopened = record_health_problems(ledger, [stale], "msg", ["slack"], NOW + timedelta(hours=1))
    assert len(reopened) == 1
    assert reopened != first


def test_readonly_reader_sees_committed_rows_while_a_writer_is_open(tmp_path):
    path = tmp_path / "alerts.sqlite"
    writer = connect_ledger(path)
    record_evaluation(writer, _decide(), [], NOW)
    writer.execute("begin immediate")  # a writer holds the write lock
    reader = connect_ledger_readonly(path)
    assert reader.execute("select count(*) from alerts").fetchone()[0] == len(EXPECTED)
    reader.close()
    writer.execute("rollback")
    writer.close()


def test_readonly_reader_names_the_fix_when_there_is_no_ledger(tmp_path):
    with pytest.raises(FileNotFoundError, match="spendwh run"):
        connect_ledger_readonly(tmp_path / "missing.sqlite")


def test_alarm_ok_alarm_in_one_period_is_one_alert(ledger):
    """Reliability test 18(d): spend lowered (duplicates removed), then raised again."""
    record_evaluation(ledger, _decide(), ["webhook"], NOW)
    alarm = record_evaluation(
        ledger, _decide(extra_crossings=[_late_user_max]), ["webhook"], NOW + timedelta(hours=1)
    )
    assert alarm.queued == 1
    outbox = _outbox(ledger)
    record_evaluation(ledger, _decide(), ["webhook"], NOW + timedelta(hours=2))  # OK again

    def crossing_again(by_id):
        row = _late_user_max(by_id)
        row["crossed_at"] = row["crossed_at"] + timedelta(hours=2)
        return row

    again = record_evaluation(
        ledger, _decide(extra_crossings=[crossing_again]), ["webhook"], NOW + timedelta(hours=3)
    )
    assert again.new_alert_ids == []
    assert len(load_alerts(ledger)) == len(EXPECTED) + 1
    assert _outbox(ledger) == outbox


def test_history_can_be_sent_on_request(ledger):
    result = record_evaluation(ledger, _decide(), ["slack"], NOW, notify_history=True)
    assert result.history == 0
    assert result.queued == len(EXPECTED)


def test_an_older_ledger_gains_the_model_and_window_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "alerts.sqlite"
    old = sqlite3.connect(path)
    old.executescript(_PRE_MODEL_SCHEMA)
    old.execute(
        "insert into alerts values ('a1', 'key', 'sk-a', null, 'max_budget', '10', null, "
        "'2026-11-01T00:00:00+00:00', '2026-12-01T00:00:00+00:00', "
        "'2026-11-14T09:30:00+00:00', '10.4', '2026-11-14T10:00:00+00:00', 0, 'm', 'key', "
        "null, null, 'queued')"
    )
    old.commit()
    old.close()
    conn = connect_ledger(path)
    try:
        [kept] = load_alerts(conn)
        assert (kept.alert_id, kept.budget_model) == ("a1", None)
        assert kept.period_spend_usd == Decimal("10.4")
        alerts = [a for a in _decide() if a.alert_id != "a1"]
        model_alert = replace(alerts[0], alert_id="a2", budget_model="gpt-4o")
        window_alert = replace(alerts[0], alert_id="a3", budget_window="30d")
        record_evaluation(conn, [model_alert, window_alert], ["slack"], NOW)
        stored = {a.alert_id: a for a in load_alerts(conn)}
        assert (stored["a2"].budget_model, stored["a2"].budget_window) == ("gpt-4o", None)
        assert (stored["a3"].budget_model, stored["a3"].budget_window) == (None, "30d")
        assert (stored["a1"].budget_model, stored["a1"].budget_window) == (None, None)
    finally:
        conn.close()
    connect_ledger(path).close()  # opening again adds nothing twice


# The alerts table as the ledger created it before budget_model existed.
_PRE_MODEL_SCHEMA = """
create table alerts (
    alert_id text primary key, entity_type text not null, entity_id text not null,
    entity_alias text, alert_type text not null, threshold_usd text, threshold_pct text,
    period_start text, period_end text, breached_at text not null,
    period_spend_usd text not null, detected_at text not null, is_late integer not null,
    message text not null, budget_source text, budget_id text,
    projected_period_spend_usd text, notification text not null
);
"""


def test_a_moved_rolling_window_does_not_send_its_breach_twice(ledger):
    """A late request older than a per-model budget's first charged request moves the window's
    start (and so the alert id); the ledger keeps the first alert and queues nothing more."""
    first = replace(
        _decide()[0],
        alert_id="model-w1",
        is_late=False,
        alert_type="max_budget",
        threshold_pct=None,
        budget_source="key_model_max_budget",
        budget_model="gpt-4o",
        period_start=NOW - timedelta(hours=10),
        period_end=NOW + timedelta(hours=14),
    )
    record_evaluation(ledger, [first], ["slack"], NOW)
    moved = replace(
        first,
        alert_id="model-w1-moved",
        period_start=NOW - timedelta(hours=11),
        period_end=NOW + timedelta(hours=13),
    )
    other_model = replace(moved, alert_id="model-other", budget_model="claude-3")
    next_window = replace(
        first,
        alert_id="model-w2",
        period_start=NOW + timedelta(hours=14),
        period_end=NOW + timedelta(hours=38),
    )
    result = record_evaluation(ledger, [moved, other_model, next_window], ["slack"], NOW)
    assert result.new_alert_ids == ["model-other", "model-w2"]
    assert result.existing == 1
    assert {row[0] for row in _outbox(ledger)} == {"model-w1", "model-other", "model-w2"}
