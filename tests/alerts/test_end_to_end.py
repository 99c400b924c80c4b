"""The whole pipeline on simulated traffic: simulator → PostgreSQL → extract → dbt → alerts.

The simulator sizes budgets so that some are crossed (soft only, or soft and max). The expected
crossing alerts are computed independently in Python from the extracted raw rows
(``tests/models/reference.py``, the same reference the dbt marts are tested against), and must
appear exactly, once each. Then a late spend row completes a crossing in a closed period and the
DuckDB cache is deleted: the next run rebuilds it from the lake, keeps every alert id and adds
exactly the new, late alerts; the delivery sensor sends each queued alert once to a real local
receiver. (Re-runs on unchanged data are covered by the faster tests.)
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from dagster_project.definitions import defs as load_defs
from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.alerts.sensors import alert_on_pipeline_failure, deliver_budget_alerts
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path, load_alerts
from dagster_project.lib.alerts.records import decimal_text
from dagster_project.settings import load_settings
from dagster_project.simulator import simulate
from tests.ingest.helpers import insert_spend, ms, spend_row
from tests.models.budget_periods import parse_duration, period_bounds
from tests.models.model_budgets import model_budget_windows
from tests.models.raw_data import RawDataset
from tests.models.reference import (
    attributed_requests,
    budget_periods,
    is_enforced,
    is_valid_duration,
    resolved_budgets,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THRESHOLDS = (85, 95)
JOB = "spend_warehouse_job"


def _raw_dataset(build_path) -> RawDataset:
    """Every table of the extracted raw layer, as rows."""
    data = RawDataset()
    with duckdb.connect(str(build_path), read_only=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        ]
        for table in tables:
            cursor = conn.execute(f'select * from raw."{table}"')
            names = [d[0] for d in cursor.description]
            data.tables[table] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return data


def expected_crossing_alerts(data: RawDataset) -> Counter:
    """(entity_type, entity_id, budget_source, budget_model, budget_window, alert_type, pct,
    period_start, breached_at)."""
    requests = attributed_requests(data)
    expected: Counter = Counter()
    for budget, windows in model_budget_windows(data, list(THRESHOLDS)).items():
        ident = (budget.entity_type, budget.entity_id, budget.budget_source, budget.model, None)
        for window in windows:
            at = f"{window.start:%Y-%m-%d %H:%M}"
            for pct in (None, *THRESHOLDS):
                kind = "max_budget" if pct is None else "threshold"
                crossed = window.crossings.get((kind, pct))
                if crossed is not None:
                    expected[(*ident, kind, None if pct is None else str(pct), at, crossed[1])] += 1
    for budget in resolved_budgets(data):
        if not is_enforced(budget):
            continue
        ident = (budget.entity_type, budget.entity_id, budget.budget_source, None, budget.window)
        for start, period in budget_periods(budget, requests, "UTC", list(THRESHOLDS)).items():
            at = f"{start:%Y-%m-%d %H:%M}"
            if period.soft_crossed_at is not None:
                expected[(*ident, "soft_budget", None, at, period.soft_crossed_at)] += 1
            if period.max_crossed_at is not None:
                expected[(*ident, "max_budget", None, at, period.max_crossed_at)] += 1
            for pct in THRESHOLDS:
                crossed = period.crossings.get(("threshold", pct))
                if crossed is not None:
                    expected[(*ident, "threshold", str(pct), at, crossed[1])] += 1
    return expected


def actual_crossing_alerts(alerts) -> Counter:
    return Counter(
        (
            a.entity_type,
            a.entity_id,
            a.budget_source,
            a.budget_model,
            a.budget_window,
            a.alert_type,
            decimal_text(a.threshold_pct),
            f"{a.period_start:%Y-%m-%d %H:%M}",
            a.breached_at.replace(tzinfo=None),
        )
        for a in alerts
        if a.alert_type != "projected"
    )


def expected_drift(population) -> set[tuple[str, str]]:
    """Counters the simulator left below their true period spend by more than the default
    tolerance (max($0.01, 1 %)): exactly what the reconciliation mart must flag."""
    counters = [
        *(("key", k.token, k) for k in population.live_keys),
        *(("team", t.team_id, t) for t in population.teams),
        *(("organization", o.organization_id, o) for o in population.organizations),
        *(("user", u.user_id, u) for u in population.users),
        *(("end_user", e.user_id, e) for e in population.end_users),
        *(("team_member", f"{m.team_id}/{m.user_id}", m) for m in population.team_members),
        # tags and projects have a counter the warehouse checks only with a budget row
        *(("tag", t.tag_name, t) for t in population.tags if t.budget_id is not None),
        *(("project", p.project_id, p) for p in population.projects if p.budget_id is not None),
    ]
    return {
        (kind, ident)
        for kind, ident, row in counters
        if abs(row.spend - row.period_spend) > max(0.01, 0.01 * row.period_spend)
    }


def reconciliation(build_path, counted_from: datetime) -> tuple[set, set]:
    """(drifted, reset since) counters of fct_spend_counter_reconciliation: a window that began
    after ``counted_from`` means a reset after the simulator set the counter, so those are left
    out of the comparison."""
    with duckdb.connect(str(build_path), read_only=True) as conn:
        rows = conn.execute(
            "select entity_type, entity_id, is_drifted, window_start > ? "
            "from fct_spend_counter_reconciliation",
            [counted_from],
        ).fetchall()
    reset = {(kind, ident) for kind, ident, _, later in rows if later}
    return {(kind, ident) for kind, ident, drift, _ in rows if drift} - reset, reset


def _identities(alerts: Counter) -> set[tuple]:
    """Signatures without ``breached_at``: what makes two alerts the same alert."""
    return {key[:-1] for key in alerts}


RESOURCES = {"settings": SettingsResource(), "alert_destinations": AlertDestinationsResource()}


def _run(instance) -> dg.ExecuteInProcessResult:
    job = load_defs().resolve_job_def(JOB)
    return job.execute_in_process(instance=instance, raise_on_error=False)


def _ledger():
    conn = connect_ledger(ledger_path(load_settings().state_dir))
    try:
        return load_alerts(conn)
    finally:
        conn.close()


def _mirror_ids(build_path) -> list[str]:
    with duckdb.connect(str(build_path), read_only=True) as conn:
        return sorted(
            r[0] for r in conn.execute("select alert_id from fct_budget_alerts").fetchall()
        )


@pytest.fixture
def pipeline_env(make_source, point_pipeline_at, tmp_path, receiver):
    source = point_pipeline_at(make_source())
    # The destination is configured in .env only: every run must find it there too.
    (tmp_path / ".env").write_text(f"SPEND_ALERTS_WEBHOOK_URL={receiver.path_url('/hook')}\n")
    return source


def _published_alert_ids(settings) -> list[str]:
    """The alert ids in the analysts' warehouse.duckdb (what the run's warehouse asset wrote)."""
    return _mirror_ids(settings.warehouse_path)


def test_pipeline_alerts_exactly_once(pipeline_env, receiver):
    source = pipeline_env
    end = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=5)
    sim = simulate(source.url, source.prefix, seed=11, end=end, days=7, requests_per_day=250)
    settings = load_settings()
    with dg.instance_for_test() as instance:
        first = _run(instance)
        assert first.success, [e.message for e in first.all_events if e.is_failure]
        # Counter reconciliation flags exactly the counters the simulator made drift.
        flagged, reset = reconciliation(settings.build_path, end)
        assert flagged == expected_drift(sim.population) - reset
        assert flagged
        alerts = _ledger()
        expected = expected_crossing_alerts(_raw_dataset(settings.build_path))
        assert sum(expected.values()) > 5  # the simulator's budgets are crossed
        assert actual_crossing_alerts(alerts) == expected
        assert len({a.alert_id for a in alerts}) == len(alerts)
        assert _mirror_ids(settings.build_path) == sorted(a.alert_id for a in alerts)
        # The job itself published the analysts' copy, with the same alerts.
        assert _published_alert_ids(settings) == sorted(a.alert_id for a in alerts)

        # A late row completes a crossing in a closed key period ...
        data = _raw_dataset(settings.build_path)
        requests = attributed_requests(data)
        now = datetime.now(UTC).replace(tzinfo=None)
        target = None
        for budget in resolved_budgets(data):
            if budget.entity_type != "key" or budget.max is None:
                continue
            if not is_valid_duration(budget.duration) or budget.duration is None:
                continue
            duration = parse_duration(budget.duration)
            for start, period in budget_periods(budget, requests, "UTC", list(THRESHOLDS)).items():
                _, end = period_bounds(start, duration, "UTC", budget.anchor)
                # closed, and within the extraction's startTime horizon (7 days)
                closed = end is not None and end <= now - timedelta(hours=1)
                if period.max_crossed_at is None and closed and start >= now - timedelta(days=5):
                    target = (budget, start, period)
                    break
            if target:
                break
        assert target is not None, "the simulation has no closed, uncrossed key period"
        budget, start, period = target
        key = next(k for k in data.rows("verification_tokens") if k["token"] == budget.entity_id)
        late = spend_row(
            "late-crossing",
            ms(start + timedelta(minutes=30)),
            spend=float(budget.max - period.spend) + 0.01,
            created_at=ms(now),
            api_key=key["token"],
            user=key["user_id"] or "",
            team_id=key["team_id"],
            end_user="",
        )
        insert_spend(source, [late])
        # ... and the DuckDB cache is deleted: this run rebuilds it from the lake (full refresh).
        settings.build_path.unlink()
        assert _run(instance).success
        after = _ledger()
        data_after = _raw_dataset(settings.build_path)
        late_rows = [r for r in data_after.rows("spend_logs") if r["request_id"] == "late-crossing"]
        assert len(late_rows) == 1, late
        expected_after = expected_crossing_alerts(data_after)
        # One alert per identity; an alert already recorded keeps its first breached_at even
        # when the late row moves the recomputed crossing earlier (edge-triggered ledger).
        assert _identities(actual_crossing_alerts(after)) == _identities(expected_after)
        assert sum(actual_crossing_alerts(after).values()) == len(_identities(expected_after))
        new = [a for a in after if a.alert_id not in {b.alert_id for b in alerts}]
        fresh = Counter(
            {k: n for k, n in expected_after.items() if k[:-1] not in _identities(expected)}
        )
        assert actual_crossing_alerts(new) == fresh
        mine = [a for a in new if a.entity_id == budget.entity_id]
        assert "max_budget" in {a.alert_type for a in mine}
        assert all(a.is_late for a in mine)  # its period had closed: late, and sent
        assert [a for a in after if a.alert_id in {b.alert_id for b in alerts}] == alerts

        assert _mirror_ids(settings.build_path) == sorted(a.alert_id for a in after)

        # Delivery: each alert queued once arrives once.
        resources = RESOURCES
        context = dg.build_sensor_context(instance=instance, resources=resources)
        deliver_budget_alerts(context)
        deliver_budget_alerts(dg.build_sensor_context(instance=instance, resources=resources))
    conn = connect_ledger(ledger_path(settings.state_dir))
    queued = {r[0] for r in conn.execute("select message_id from outbox")}
    conn.close()
    assert set(receiver.accepted_on("/hook")) == queued
    assert receiver.duplicates == 0
    assert {a.alert_id for a in new} <= queued  # late alerts are sent; history is not


def test_failed_blocking_check_stops_alerts_and_opens_a_health_alert(pipeline_env, receiver):
    """Reliability test 19 on the real job: no source spend logs = freshness fails."""
    source = pipeline_env
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('SpendLogs')}")
    with dg.instance_for_test() as instance:
        result = _run(instance)
        assert not result.success  # failed, not "success with skipped assets"
        materialized = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        assert "fct_budget_alerts" not in materialized
        assert "fct_budget_periods" not in materialized
        assert "warehouse" not in materialized
        assert not load_settings().warehouse_path.exists()  # nothing published from bad data
        # The job's failure hook opened the pipeline-health alert in the run itself ...
        conn = connect_ledger(ledger_path(load_settings().state_dir))
        try:
            opened = [r[0] for r in conn.execute("select problem_key from health_events")]
        finally:
            conn.close()
        assert opened == [f"run:{JOB}"]
        # ... and the run-failure sensor (for runs that die without hooks) adds no second one.
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_pipeline_failure",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources=RESOURCES,
        ).for_run_failure()
        alert_on_pipeline_failure(context)
        deliver_budget_alerts(dg.build_sensor_context(instance=instance, resources=RESOURCES))
    [health] = [r["body"] for r in receiver.requests]
    assert health["event"] == "pipeline_health"
    assert f"run of {JOB} failed" in health["message"]
    assert "not 'within budget'" in health["message"]
