"""Alerts from the real dbt marts: designed spend rows → raw layer → ``dbt run`` → alerts.

The raw layer follows the raw contract (written with the dbt tests' helpers); the budget marts
are built by the real dbt project on DuckDB with ``budget_as_of`` pinned, and the alert asset
runs in a real Dagster run. The spend rows are designed so that each crossing happens at a
known request, which is the ``breached_at`` the alert must carry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import pytest

from dagster_project.defs.alerts.assets import fct_budget_alerts
from dagster_project.defs.alerts.checks import mirror_matches_ledger
from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path, load_alerts
from tests.alerts.designed import alert_signature
from tests.models.dbt_runner import duckdb_env, run_dbt
from tests.models.raw_data import RawDataset, write_raw_layer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = "2028-03-20 12:00:00"
CREATED = datetime(2028, 1, 1)

# (entity_type, entity_id, alert_type, threshold_pct, period_start, breached_at)
EXPECTED = {
    # key-one: daily budget of $4; four $1 requests on Feb 10 reach it at 13:00.
    ("key", "hash_k1", "threshold", "85", "2028-02-10 00:00", "2028-02-10 13:00"),
    ("key", "hash_k1", "threshold", "95", "2028-02-10 00:00", "2028-02-10 13:00"),
    ("key", "hash_k1", "max_budget", None, "2028-02-10 00:00", "2028-02-10 13:00"),
    # team Alpha: $10 max, $6 soft, monthly; February spend 5 + 1.5 + 2 + 1 = 9.5.
    ("team", "team_a", "soft_budget", None, "2028-02-01 00:00", "2028-02-12 10:00"),
    ("team", "team_a", "threshold", "85", "2028-02-01 00:00", "2028-02-14 10:00"),
    ("team", "team_a", "threshold", "95", "2028-02-01 00:00", "2028-02-20 10:00"),
    # key-two: $100 monthly; $4 a day in March is $80 by the 20th, forecast far above $100.
    ("key", "hash_k2", "projected", None, "2028-03-01 00:00", "2028-03-20 09:00"),
}
LATE = ("team", "team_a", "max_budget", None, "2028-02-01 00:00", "2028-02-25 10:00")


def _request(i: int, key: str, team: str, user: str, started: datetime, spend: float) -> dict:
    return {
        "request_id": f"req_{i:04d}",
        "call_type": "acompletion",
        "api_key": key,
        "spend": spend,
        "total_tokens": 10,
        "prompt_tokens": 5,
        "completion_tokens": 5,
        "start_time": started,
        "end_time": started + timedelta(seconds=2),
        "completion_start_time": started + timedelta(seconds=1),
        "model": "gpt-4o",
        "model_id": "",
        "model_group": "gpt-4o",
        "custom_llm_provider": "openai",
        "api_base": "",
        "user_id": user,
        "end_user": "",
        "team_id": team,
        "organization_id": None,
        "cache_hit": "False",
        "cache_key": "",
        "request_tags": "[]",
        "metadata": "{}",
        "status": "success",
        "_extracted_at": started + timedelta(minutes=1),
        "_batch_id": "b1",
    }


def designed_raw(late_row: bool = False) -> RawDataset:
    """Two keys, one team, two users without budgets; spend designed for EXPECTED."""
    data = RawDataset()
    data.rows("teams").append(
        {
            "team_id": "team_a",
            "team_alias": "Alpha",
            "organization_id": None,
            "budget_duration": "30d",
            "max_budget": 10.0,
            "soft_budget": 6.0,
            "spend": 0.0,
            "blocked": False,
            "created_at": CREATED,
            "updated_at": CREATED,
        }
    )
    for user_id in ("user_1", "user_2"):
        data.rows("users").append(
            {
                "user_id": user_id,
                "user_email": f"{user_id}@example.com",
                "user_role": "internal_user",
                "spend": 0.0,
                "created_at": CREATED,
                "updated_at": CREATED,
            }
        )
    for token, alias, user, team, max_budget, duration in (
        ("hash_k1", "key-one", "user_1", "team_a", 4.0, "1d"),
        ("hash_k2", "key-two", "user_2", None, 100.0, "30d"),
    ):
        data.rows("verification_tokens").append(
            {
                "token": token,
                "key_name": "sk-..." + token[-2:],
                "key_alias": alias,
                "user_id": user,
                "team_id": team,
                "budget_duration": duration,
                "max_budget": max_budget,
                "spend": 0.0,
                "blocked": False,
                "created_at": CREATED,
                "updated_at": CREATED,
                "metadata": "{}",
            }
        )
    rows = data.rows("spend_logs")
    feb = [
        *[(datetime(2028, 2, 10, hour), 1.0) for hour in (10, 11, 12, 13, 14)],
        (datetime(2028, 2, 12, 10), 1.5),
        (datetime(2028, 2, 14, 10), 2.0),
        (datetime(2028, 2, 20, 10), 1.0),
    ]
    if late_row:  # arrives after February closed and takes the team over $10
        feb.append((datetime(2028, 2, 25, 10), 0.6))
    for started, spend in feb:
        rows.append(_request(len(rows), "hash_k1", "team_a", "user_1", started, spend))
    for day in range(1, 21):
        started = datetime(2028, 3, day, 9)
        rows.append(_request(len(rows), "hash_k2", "", "user_2", started, 4.0))
    return data


def _build(path, work, data: RawDataset) -> None:
    path.unlink(missing_ok=True)
    write_raw_layer(path, data)
    run_dbt(
        ["run", "--select", "+fct_budget_periods +fct_budget_threshold_crossings"],
        work,
        duckdb_env(path),
        vars_yaml=f'{{budget_as_of: "{AS_OF}"}}',
    )


def _evaluate(instance) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=[fct_budget_alerts, mirror_matches_ledger],
        resources={
            "settings": SettingsResource(),
            "alert_destinations": AlertDestinationsResource(),
        },
    )
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)


def _alerts(settings):
    conn = connect_ledger(ledger_path(settings.state_dir))
    try:
        return load_alerts(conn)
    finally:
        conn.close()


def test_alerts_from_real_marts_late_row_and_full_rebuild(settings, tmp_path):
    work = tmp_path / "dbt"
    with dg.instance_for_test() as instance:
        _build(settings.build_path, work, designed_raw())
        assert _evaluate(instance).success
        first = _alerts(settings)
        assert {alert_signature(a) for a in first} == EXPECTED
        as_of = datetime.fromisoformat(AS_OF + "+00:00")
        assert {a.detected_at for a in first} == {as_of}
        assert {a.alert_type for a in first if a.is_late} == {
            "threshold",
            "max_budget",
            "soft_budget",
        }
        # Re-running changes nothing.
        assert _evaluate(instance).success
        assert _alerts(settings) == first

        # A late row completes the team's February max-budget crossing: one late alert, after a
        # rebuild of the marts from scratch.
        _build(settings.build_path, work, designed_raw(late_row=True))
        assert _evaluate(instance).success
        second = _alerts(settings)
        new = [a for a in second if a.alert_id not in {b.alert_id for b in first}]
        assert [alert_signature(a) for a in new] == [LATE]
        assert new[0].is_late
        assert [a for a in second if a.alert_id in {b.alert_id for b in first}] == first

        # Every _build starts from an empty DuckDB file: the late-row build above was also a
        # full rebuild, and it kept every alert id and row.
        conn = connect_ledger(ledger_path(settings.state_dir))
        notifications = dict(conn.execute("select alert_id, notification from alerts").fetchall())
        conn.close()
        assert notifications[new[0].alert_id] == "no_destination"  # late: sent, not history
