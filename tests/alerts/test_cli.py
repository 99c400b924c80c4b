"""``spendwh alerts``: filters, the readable table, health warnings, read-only access."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from dagster_project.cli import main
from dagster_project.commands.alerts import delivery_label, format_table, query_alerts
from dagster_project.lib.alerts.ledger import (
    connect_ledger,
    connect_ledger_readonly,
    ledger_path,
    record_evaluation,
    record_health_problems,
)
from dagster_project.lib.alerts.records import HealthProblem
from tests.alerts.designed import EXPECTED, NOW
from tests.alerts.test_ledger import _decide


@pytest.fixture
def ledger(settings):
    path = ledger_path(settings.state_dir)
    conn = connect_ledger(path)
    record_evaluation(conn, _decide(), ["webhook"], NOW)
    conn.execute(
        "update outbox set status = 'sent' where message_id = (select min(message_id) from outbox)"
    )
    conn.close()
    return path


def _ids(rows):
    return {(r["entity_id"], r["alert_type"], r["threshold_pct"]) for r in rows}


def test_filters(ledger):
    conn = connect_ledger_readonly(ledger)
    everything = query_alerts(conn, now=NOW, period="all")
    current = query_alerts(conn, now=NOW, period="current")
    october = query_alerts(conn, now=NOW, period="2026-10-15")
    keys = query_alerts(conn, now=NOW, period="all", entity_type="key")
    projected = query_alerts(conn, now=NOW, alert_type="projected")
    after_november = query_alerts(conn, now=NOW + timedelta(days=20), period="current")
    conn.close()
    assert len(everything) == len(EXPECTED)
    assert len(current) == len(EXPECTED) - 6  # October's six are closed
    assert _ids(october) == {
        ("sk-a", "soft_budget", None),
        ("sk-a", "threshold", "85"),
        ("sk-a", "threshold", "95"),
        ("sk-a", "max_budget", None),
        ("u-1", "threshold", "85"),
        ("u-1", "threshold", "95"),
        # the open-ended organization budget covers October too
        ("org-1", "threshold", "85"),
        ("org-1", "threshold", "95"),
        ("org-1", "max_budget", None),
    }
    assert {r["entity_type"] for r in keys} == {"key"}
    assert {r["entity_id"] for r in projected} == {"team-1", "team-1/u-2"}
    assert {r["entity_id"] for r in after_november} == {"org-1"}  # only open-ended remains


def test_table_output(ledger, capsys):
    assert main(["alerts", "--period", "all", "--entity-type", "key"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("WARNING: alerts were last evaluated at 2026-11-20 12:00 UTC")
    assert lines[1].split() == [
        "BREACHED",
        "(UTC)",
        "TYPE",
        "ENTITY",
        "SPENT",
        "BUDGET",
        "PERIOD",
        "DELIVERY",
    ]
    assert "threshold 95% " in out
    assert "max_budget (late)" in out
    assert "key prod-app" in out
    assert "$100.40" in out
    assert "not sent: before first run" in out
    assert "8 alert(s)" in out


def test_json_output_and_health_warning(ledger, capsys):
    conn = connect_ledger(ledger)
    record_health_problems(
        conn, [HealthProblem("check:x", "x failed")], "Budget alerts were not evaluated", [], NOW
    )
    conn.close()
    assert main(["alerts", "--period", "all", "--format", "json", "--type", "projected"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["alerts"]) == 2
    assert any("PIPELINE HEALTH" in w for w in body["warnings"])
    assert any("last evaluated" in w for w in body["warnings"])


def test_bad_period_and_missing_ledger_are_clean_errors(settings, capsys):
    assert main(["alerts"]) == 2
    assert "spendwh run" in capsys.readouterr().err
    connect_ledger(ledger_path(settings.state_dir)).close()
    assert main(["alerts", "--period", "last-week"]) == 2
    assert "--period 'last-week'" in capsys.readouterr().err


def test_delivery_labels_and_table_layout():
    assert delivery_label("queued", "webhook:sent:1,slack:pending:3") == (
        "slack retrying (3), webhook sent"
    )
    assert delivery_label("no_destination", None) == "not sent: no destination"
    table = format_table([{"A": "x", "BB": "yyy"}, {"A": "long", "BB": "z"}])
    assert table.splitlines() == ["A     BB", "x     yyy", "long  z"]


def test_retry_failed_requeues_deliveries_that_gave_up(ledger, capsys):
    conn = connect_ledger(ledger)
    conn.execute("update outbox set status = 'failed', attempts = 10 where status = 'pending'")
    failed = conn.execute("select count(*) from outbox where status = 'failed'").fetchone()[0]
    conn.close()
    assert failed > 0
    assert main(["alerts", "--retry-failed", "--period", "all"]) == 0
    assert f"{failed} failed deliveries queued again" in capsys.readouterr().out
    conn = connect_ledger(ledger)
    rows = conn.execute("select status, attempts from outbox where status != 'sent'").fetchall()
    conn.close()
    assert {tuple(r) for r in rows} == {("pending", 0)}
