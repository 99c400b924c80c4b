"""``fct_budget_alerts`` in real Dagster runs on hand-built marts, and the delivery sensor.

The marts are DuckDB tables with exactly the dbt models' contract columns; the runs, the
instance, the asset checks, DuckDB and SQLite are all real.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from dagster_project.defs.alerts.assets import fct_budget_alerts
from dagster_project.defs.alerts.checks import mirror_matches_ledger, no_failed_deliveries
from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.alerts.sensors import alert_on_pipeline_failure, deliver_budget_alerts
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path, load_alerts
from dagster_project.lib.alerts.marts import ALERTS_COLUMNS
from dagster_project.lib.times import iso
from tests.alerts.designed import (
    EXPECTED,
    NOW,
    alert_signature,
    crossing,
    designed_marts,
    write_marts,
)

pytestmark = pytest.mark.integration

RESOURCES = {"settings": SettingsResource(), "alert_destinations": AlertDestinationsResource()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _materialize(instance, *extra, raise_on_error=True):
    """One run of every asset and check given, through Definitions like a deployment."""
    defs = dg.Definitions(
        assets=[fct_budget_alerts, mirror_matches_ledger, no_failed_deliveries, *extra],
        resources=RESOURCES,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=raise_on_error)


def _mirror(settings) -> list[tuple]:
    conn = duckdb.connect(str(settings.build_path), read_only=True)
    try:
        return conn.execute("select * from main.fct_budget_alerts order by alert_id").fetchall()
    finally:
        conn.close()


def _digest(rows) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _ledger_alerts(settings):
    conn = connect_ledger(ledger_path(settings.state_dir))
    try:
        return load_alerts(conn)
    finally:
        conn.close()


def test_materializes_exactly_the_expected_alerts(settings, instance):
    write_marts(settings.build_path, *designed_marts())
    result = _materialize(instance)
    assert result.success
    alerts = _ledger_alerts(settings)
    assert {alert_signature(a) for a in alerts} == EXPECTED
    rows = _mirror(settings)
    assert len(rows) == len(EXPECTED)
    conn = duckdb.connect(str(settings.build_path), read_only=True)
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_name = 'fct_budget_alerts' order by ordinal_position"
    ).fetchall()
    comments = conn.execute(
        "select comment from duckdb_columns() where table_name = 'fct_budget_alerts'"
    ).fetchall()
    conn.close()
    assert all(c[0] for c in comments)  # every column described for analysts
    assert [c[0] for c in columns] == [c[0] for c in ALERTS_COLUMNS]
    assert dict(columns)["threshold_usd"] == "DECIMAL(38,10)"
    # detected_at is the marts' evaluation instant; closed periods were first seen late.
    assert {a.detected_at for a in alerts} == {NOW}
    assert {a.alert_id for a in alerts if a.is_late} == {
        a.alert_id for a in alerts if a.period_end is not None and a.period_end <= NOW
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"mirror_matches_ledger": True, "no_failed_deliveries": True}
    meta = result.asset_materializations_for_node("fct_budget_alerts")[0].metadata
    assert meta["new_alerts"].value == len(EXPECTED)
    assert meta["destinations"].value == "none"


def test_rerun_and_full_rebuild_keep_ids_rows_and_detection(settings, instance):
    write_marts(settings.build_path, *designed_marts())
    _materialize(instance)
    first = _mirror(settings)
    _materialize(instance)  # (a) re-run
    assert _digest(_mirror(settings)) == _digest(first)
    # A full rebuild: the DuckDB cache is deleted and the marts are rebuilt, evaluated later.
    settings.build_path.unlink()
    periods, crossings = designed_marts()
    later = NOW + timedelta(hours=3)
    for row in periods:
        row["evaluated_at"] = later.replace(tzinfo=None)
    write_marts(settings.build_path, periods, crossings)
    result = _materialize(instance)
    meta = result.asset_materializations_for_node("fct_budget_alerts")[0].metadata
    assert meta["new_alerts"].value == 0
    assert _digest(_mirror(settings)) == _digest(first)


def test_late_row_in_a_closed_period_gives_one_late_alert(settings, instance):
    periods, crossings = designed_marts()
    write_marts(settings.build_path, periods, crossings)
    _materialize(instance)
    # A late spend row takes user u-1 over its (closed) October max budget.
    user_oct = next(p for p in periods if p["entity_id"] == "u-1" and not p["is_current_period"])
    user_oct["period_spend_usd"] = Decimal("100.2")
    later = NOW + timedelta(minutes=15)
    for row in periods:
        row["evaluated_at"] = later.replace(tzinfo=None)
    late = crossing(user_oct, "max_budget", "2026-10-31 20:00", "100.2")
    write_marts(settings.build_path, periods, [*crossings, late])
    _materialize(instance)
    _materialize(instance)
    alerts = _ledger_alerts(settings)
    assert len(alerts) == len(EXPECTED) + 1
    [new] = [a for a in alerts if a.detected_at == later]
    assert (new.entity_id, new.alert_type, new.is_late) == ("u-1", "max_budget", True)
    assert len(_mirror(settings)) == len(EXPECTED) + 1


def _upstream_with_check(settings, passed: bool, severity=dg.AssetCheckSeverity.ERROR):
    """Stand-ins for the dbt marts: they (re)write the tables and carry a data test."""

    @dg.asset(key="fct_budget_periods")
    def periods_mart() -> None:
        write_marts(settings.build_path, *designed_marts())

    @dg.asset(key="fct_budget_threshold_crossings", deps=[periods_mart])
    def crossings_mart() -> None:
        return None

    @dg.asset_check(asset=periods_mart, name="unique_budget_period_id")
    def unique_check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=passed, severity=severity, description="3 duplicate budget_period_id"
        )

    return [periods_mart, crossings_mart, unique_check]


def test_failed_upstream_check_fails_the_run_and_records_a_health_alert(settings, instance):
    result = _materialize(
        instance, *_upstream_with_check(settings, passed=False), raise_on_error=False
    )
    assert not result.success  # failed, not "success with skipped assets"
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "fct_budget_alerts"
    assert "unique_budget_period_id" in failure.event_specific_data.error.message
    assert not result.asset_materializations_for_node("fct_budget_alerts")
    conn = connect_ledger(ledger_path(settings.state_dir))
    events = conn.execute("select * from health_events").fetchall()
    assert conn.execute("select count(*) from alerts").fetchone()[0] == 0
    conn.close()
    assert len(events) == 1
    assert "3 duplicate budget_period_id" in events[0]["message"]
    assert events[0]["resolved_at"] is None
    # Fixed data: the next run evaluates, and resolves the health event.
    assert _materialize(instance, *_upstream_with_check(settings, passed=True)).success
    conn = connect_ledger(ledger_path(settings.state_dir))
    assert conn.execute("select resolved_at from health_events").fetchone()[0] is not None
    conn.close()
    assert len(_ledger_alerts(settings)) == len(EXPECTED)


def test_warning_checks_do_not_block(settings, instance):
    upstream = _upstream_with_check(settings, passed=False, severity=dg.AssetCheckSeverity.WARN)
    assert _materialize(instance, *upstream).success


def test_missing_marts_fail_with_a_fix(settings, instance):
    result = _materialize(instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "run the dbt marts first" in str(failure.event_specific_data)


# --- the sensor ----------------------------------------------------------------------------


def _tick(instance, max_evaluation_age_minutes: float = 1e9):
    resource = AlertDestinationsResource(max_evaluation_age_minutes=max_evaluation_age_minutes)
    context = dg.build_sensor_context(
        instance=instance,
        resources={"settings": SettingsResource(), "alert_destinations": resource},
    )
    return deliver_budget_alerts(context)


def test_sensor_without_ledger_or_destination_explains_itself(settings, instance):
    assert "no alert ledger yet" in _tick(instance).skip_message
    write_marts(settings.build_path, *designed_marts())
    _materialize(instance)
    assert "no alert destination configured" in _tick(instance).skip_message


def test_sensor_delivers_each_alert_once(settings, instance, receiver, monkeypatch):
    monkeypatch.setenv("SPEND_ALERTS_WEBHOOK_URL", receiver.path_url("/hook/SECRETPATH"))
    monkeypatch.setenv("SPEND_ALERTS_SLACK_WEBHOOK_URL", receiver.path_url("/slack/SECRETPATH"))
    write_marts(settings.build_path, *designed_marts())
    _materialize(instance)
    queued = {a.alert_id for a in _ledger_alerts(settings) if not a.is_late}
    first = _tick(instance)
    assert first.skip_message.startswith(f"sent {2 * len(queued)}, retrying 0, failed 0")
    second = _tick(instance)
    assert second.skip_message.startswith("sent 0, retrying 0, failed 0")
    assert set(receiver.accepted_on("/hook/SECRETPATH")) == queued
    assert set(receiver.accepted_on("/slack/SECRETPATH")) == queued
    assert receiver.duplicates == 0
    assert "SECRETPATH" not in first.skip_message


def test_sensor_raises_a_health_alert_when_evaluation_stops(
    settings, instance, receiver, monkeypatch
):
    monkeypatch.setenv("SPEND_ALERTS_WEBHOOK_URL", receiver.path_url("/hook"))
    write_marts(settings.build_path, *designed_marts())
    _materialize(instance)
    _tick(instance, max_evaluation_age_minutes=60)  # fresh: no health alert
    assert [r for r in receiver.requests if r["body"]["event"] == "pipeline_health"] == []
    # The pipeline stops: the last evaluation is now 2 hours old.
    conn = connect_ledger(ledger_path(settings.state_dir))
    two_hours_ago = iso(datetime.now(UTC) - timedelta(hours=2))
    conn.execute(
        "update ledger_meta set value = ? where key = 'last_evaluated_at'", (two_hours_ago,)
    )
    conn.close()
    _tick(instance, max_evaluation_age_minutes=60)
    _tick(instance, max_evaluation_age_minutes=60)
    health = [r for r in receiver.requests if r["body"]["event"] == "pipeline_health"]
    assert len(health) == 1  # edge-triggered: once, not once per tick
    assert "last evaluated" in health[0]["body"]["message"]


def test_definitions_load_with_the_alert_objects():
    from dagster_project.definitions import defs

    loaded = defs()
    graph = loaded.resolve_asset_graph()
    node = graph.get(dg.AssetKey("fct_budget_alerts"))
    # Downstream of the dbt marts themselves (not of unknown external keys).
    assert {k.to_user_string() for k in node.parent_keys} == {
        "fct_budget_periods",
        "fct_budget_threshold_crossings",
    }
    assert all(graph.get(k).is_materializable for k in node.parent_keys)
    # The blocking extraction checks are among the checks the asset consults.
    ancestors_checks = graph.get_check_keys_for_assets(graph.get_ancestor_asset_keys(node.key))
    assert {"freshness", "reconciliation"} <= {k.name for k in ancestors_checks}
    assert loaded.resolve_sensor_def("alert_on_pipeline_failure") is not None
    assert loaded.resolve_sensor_def("deliver_budget_alerts").default_status == (
        dg.DefaultSensorStatus.RUNNING
    )


def test_failed_run_opens_one_health_alert_until_a_healthy_evaluation(
    settings, instance, receiver, monkeypatch
):
    monkeypatch.setenv("SPEND_ALERTS_WEBHOOK_URL", receiver.path_url("/hook"))
    result = _materialize(
        instance, *_upstream_with_check(settings, passed=False), raise_on_error=False
    )
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    for _ in range(2):  # the same job failing again does not open a second alert
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_pipeline_failure",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources=RESOURCES,
        ).for_run_failure()
        alert_on_pipeline_failure(context)
    _tick(instance)
    messages = [r["body"]["message"] for r in receiver.requests]
    # One from the asset's refusal (failed check), one from the failed run.
    assert len(messages) == 2
    assert any("run of __ASSET_JOB failed (failed: fct_budget_alerts)" in m for m in messages)
    conn = connect_ledger(ledger_path(settings.state_dir))
    assert (
        conn.execute("select count(*) from health_events where resolved_at is null").fetchone()[0]
        == 2
    )
    conn.close()
    _materialize(instance, *_upstream_with_check(settings, passed=True))
    conn = connect_ledger(ledger_path(settings.state_dir))
    assert (
        conn.execute("select count(*) from health_events where resolved_at is null").fetchone()[0]
        == 0
    )
    conn.close()
