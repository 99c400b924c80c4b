"""A weeks-old spend row inserted now: the budget alert it causes arrives once, marked late.

The whole job (extract, dbt, alerts, publish) on a real PostgreSQL source with a designed key:
a daily max budget of $5 and $3 spent 30 days ago. A row inserted now with a ``startTime`` on
that day (a proxy flushing its backlog, a replayed queue) brings the day to $6, so the closed
period crosses 85 %, 95 % and the max budget. With ``created_at`` and no index leading with it
(the upstream schema), and with ``startTime`` (older proxies), the next run's blocking
reconciliation check fails naming the day, so no alert is decided from incomplete data, and the
daily rollback reads the row. (With such an index the next run reads it, as the raw-layer test
in ``tests/ingest/test_lateness.py`` shows; the alert then follows as here.) The three alerts are
recorded once, marked late, and the delivery sensor sends each once to a real local receiver;
later runs add and send nothing.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from dagster_project.definitions import defs as load_defs
from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.alerts.sensors import deliver_budget_alerts
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path, load_alerts
from dagster_project.settings import load_settings
from tests.ingest.helpers import insert_spend, ms, spend_row, utcnow
from tests.ingest.test_incremental import OLD_SCHEMA
from tests.spendwh import run_spendwh

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-late-backlog"
RESOURCES = {"settings": SettingsResource(), "alert_destinations": AlertDestinationsResource()}


@pytest.fixture
def configure(make_source, point_pipeline_at, receiver):
    """A fresh source (``until``: an older schema) and the settings of a warehouse beside it,
    delivering to the receiver's ``/hook``."""

    def factory(until: str | None):
        return point_pipeline_at(make_source(until=until), receiver.path_url("/hook"))

    return factory


def insert_key(source, alias: str, duration: str) -> None:
    """The designed key: a max budget of $5 per ``duration``."""
    with source.connect() as conn:
        conn.execute(
            f"INSERT INTO {source.table('VerificationToken')} "
            "(token, key_alias, max_budget, budget_duration) VALUES (%s, %s, %s, %s)",
            [KEY, alias, 5.0, duration],
        )


def run_job(instance, name: str) -> dg.ExecuteInProcessResult:
    return (
        load_defs()
        .resolve_job_def(name)
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def key_alerts() -> list:
    conn = connect_ledger(ledger_path(load_settings().state_dir))
    try:
        return [a for a in load_alerts(conn) if a.entity_id == KEY]
    finally:
        conn.close()


def deliver(instance) -> None:
    deliver_budget_alerts(dg.build_sensor_context(instance=instance, resources=RESOURCES))


@pytest.mark.parametrize("until", [None, OLD_SCHEMA], ids=["created_at", "startTime"])
def test_alert_of_a_weeks_old_row_arrives_once_marked_late(configure, receiver, until):
    source = configure(until)
    insert_key(source, "backlog-key", "1d")
    now = ms(utcnow())
    day = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    insert_spend(
        source,
        [
            spend_row("on-time", day + timedelta(hours=10), spend=3.0, api_key=KEY),
            *(
                spend_row(f"recent-{i}", now - timedelta(hours=i + 1), api_key=KEY)
                for i in range(5)
            ),
        ],
    )
    with dg.instance_for_test() as instance:
        first = run_job(instance, "spend_warehouse_job")
        assert first.success, [e.message for e in first.all_events if e.is_failure]
        assert key_alerts() == []  # $3 of $5: no crossing, nothing recorded as history

        late_at = day + timedelta(hours=12)
        insert_spend(source, [spend_row("backlog", late_at, spend=3.0, api_key=KEY)])
        second = run_job(instance, "spend_warehouse_job")
        assert not second.success  # the blocking check names the day; nothing decided
        failed = [
            e.asset_check_evaluation_data
            for e in second.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and not e.asset_check_evaluation_data.passed
        ]
        assert [f.check_name for f in failed] == ["reconciliation"]
        assert day.date().isoformat() in failed[0].description
        assert key_alerts() == []
        repaired = run_job(instance, "spend_warehouse_rollback_job")
        assert repaired.success, [e.message for e in repaired.all_events if e.is_failure]

        alerts = key_alerts()
        assert sorted((a.alert_type, a.threshold_pct) for a in alerts) == [
            ("max_budget", None),
            ("threshold", 85),
            ("threshold", 95),
        ]
        assert all(a.is_late for a in alerts)
        assert {a.period_start.replace(tzinfo=None) for a in alerts} == {day}
        assert {a.breached_at.replace(tzinfo=None) for a in alerts} == {late_at}
        assert all("Detected late" in a.message for a in alerts), alerts[0].message

        deliver(instance)
        deliver(instance)
        assert run_job(instance, "spend_warehouse_job").success
        deliver(instance)
        assert key_alerts() == alerts  # nothing added, nothing changed
    delivered = receiver.accepted_on("/hook")
    assert {a.alert_id for a in alerts} <= set(delivered)
    assert all(delivered[a.alert_id]["is_late"] is True for a in alerts)
    assert receiver.duplicates == 0


def test_spend_logs_disabled_make_budgets_unknown_not_under_budget(configure, tmp_path, receiver):
    """Spend logs emptied under a running warehouse (``disable_spend_logs``, a truncate): the
    on-call person is told the budget status is unknown and why; no budget alert is decided or
    sent from the empty table, and analysts keep the last good warehouse."""
    source = configure(None)
    insert_key(source, "disabled-key", "30d")
    now = ms(utcnow())
    rows = [spend_row(f"r{i}", now - timedelta(hours=i + 1), api_key=KEY) for i in range(5)]
    insert_spend(source, rows)
    settings = load_settings()
    with dg.instance_for_test() as instance:
        assert run_job(instance, "spend_warehouse_job").success
        published = settings.warehouse_path.read_bytes()
        with source.connect() as conn:
            conn.execute(f"DELETE FROM {source.table('SpendLogs')}")
        result = run_job(instance, "spend_warehouse_job")
        assert not result.success
        skipped = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert {"fct_budget_periods", "fct_budget_alerts", "warehouse"}.isdisjoint(skipped)
        deliver(instance)
    assert settings.warehouse_path.read_bytes() == published  # the last good copy stays
    assert key_alerts() == []
    [health] = [r["body"] for r in receiver.requests]
    assert health["event"] == "pipeline_health"
    message = health["message"]
    assert "raw/spend_logs:reconciliation failed: source disabled" in message
    assert "the budget status is unknown" in message
    assert "not 'within budget'" in message
    assert "DagsterAssetCheckFailedError" not in message
    listed = run_spendwh(["alerts"], tmp_path, {"SPEND_WAREHOUSE_DIR": str(tmp_path / "wh")})
    assert listed.returncode == 0, listed.stderr
    assert "PIPELINE HEALTH" in listed.stdout
    assert "source disabled" in listed.stdout
