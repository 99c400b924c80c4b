"""With ``DBT_TARGET=postgres`` the marts live in PostgreSQL: alerts are read and mirrored there.

Same designed marts and the same expected alerts as on DuckDB: the alert ids do not depend on
the engine the marts were built on.
"""

from __future__ import annotations

import uuid

import dagster as dg
import psycopg
import pytest

from dagster_project.defs.alerts.assets import fct_budget_alerts
from dagster_project.defs.alerts.checks import mirror_matches_ledger
from dagster_project.defs.alerts.resources import AlertDestinationsResource
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path, load_alerts
from dagster_project.lib.alerts.marts import ALERTS_COLUMNS
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import load_settings
from tests.alerts.designed import (
    CROSSING_COLUMNS,
    EXPECTED,
    PERIOD_COLUMNS,
    alert_signature,
    designed_marts,
)
from tests.alerts.test_ledger import _decide

pytestmark = pytest.mark.integration
SCHEMA = "spend_warehouse"


@pytest.fixture
def marts_db(pg_server_url, settings, monkeypatch, tmp_path):
    """A PostgreSQL database holding the designed marts in schema ``spend_warehouse``."""
    name = f"spendwh_alerts_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, name)
    periods, crossings = designed_marts()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create schema {SCHEMA}")
        for table, columns, rows in (
            ("fct_budget_periods", PERIOD_COLUMNS, periods),
            ("fct_budget_threshold_crossings", CROSSING_COLUMNS, crossings),
        ):
            ddl = ", ".join(f"{c} {t}" for c, t in columns.items())
            conn.execute(f"create table {SCHEMA}.{table} ({ddl})")
            marks = ", ".join("%s" for _ in columns)
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"insert into {SCHEMA}.{table} values ({marks})",
                    [[row[c] for c in columns] for row in rows],
                )
    monkeypatch.setenv("DBT_TARGET", "postgres")
    monkeypatch.setenv("WAREHOUSE_POSTGRES_URL", url)
    monkeypatch.setenv("DBT_POSTGRES_SCHEMA", SCHEMA)
    for var in (
        "DBT_POSTGRES_HOST",
        "DBT_POSTGRES_PORT",
        "DBT_POSTGRES_USER",
        "DBT_POSTGRES_PASSWORD",
        "DBT_POSTGRES_DBNAME",
    ):
        monkeypatch.delenv(var, raising=False)
    yield url
    drop_database(pg_server_url, name)


def test_alerts_from_postgres_marts(marts_db):
    assert load_settings().dbt_target == "postgres"
    defs = dg.Definitions(
        assets=[fct_budget_alerts, mirror_matches_ledger],
        resources={
            "settings": SettingsResource(),
            "alert_destinations": AlertDestinationsResource(),
        },
    )
    with dg.instance_for_test() as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance)
        assert result.success
        assert job.execute_in_process(instance=instance).success  # re-run: no change
    conn = connect_ledger(ledger_path(load_settings().state_dir))
    alerts = load_alerts(conn)
    conn.close()
    assert {alert_signature(a) for a in alerts} == EXPECTED
    assert {a.alert_id for a in alerts} == {a.alert_id for a in _decide()}  # engine-independent
    with psycopg.connect(marts_db) as pg:
        rows = pg.execute(
            f"select alert_id, threshold_usd, is_late from {SCHEMA}.fct_budget_alerts"
        ).fetchall()
        columns = pg.execute(
            "select column_name, col_description(attrelid, attnum) from information_schema.columns "
            "join pg_attribute on attname = column_name "
            f"and attrelid = '{SCHEMA}.fct_budget_alerts'::regclass "
            f"where table_schema = '{SCHEMA}' and table_name = 'fct_budget_alerts' "
            "order by ordinal_position"
        ).fetchall()
    assert {r[0] for r in rows} == {a.alert_id for a in alerts}
    assert len(rows) == len(EXPECTED)
    assert [c[0] for c in columns] == [c[0] for c in ALERTS_COLUMNS]
    assert all(c[1] for c in columns)
