"""Nothing new, nothing done: the whole job on a real source, with and without new rows.

A run whose extraction stores nothing skips the dbt build, the alert evaluation and the publish
(the analysts' file is not touched); a new row, a budget evaluation that is due, or a build
database rebuilt from the lake each bring the full run back.
"""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from dagster_project.definitions import defs as load_defs
from dagster_project.defs.dbt.assets import DBT_ASSETS_NAME
from dagster_project.settings import load_settings
from tests.ingest.helpers import insert_spend, ms, spend_row, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "spend_warehouse_job"


def run(instance, run_config: dict | None = None) -> tuple[dg.ExecuteInProcessResult, set, float]:
    started = time.monotonic()
    result = (
        load_defs()
        .resolve_job_def(JOB)
        .execute_in_process(instance=instance, raise_on_error=False, run_config=run_config or {})
    )
    elapsed = time.monotonic() - started
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    return result, keys, elapsed


def logged(instance, result, fragment: str) -> str:
    """The first message of the run's log holding ``fragment`` ("" when none does)."""
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return next((m for m in messages if fragment in m), "")


def published_ids(path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("select request_id from raw.spend_logs order by 1").fetchall()
    return [r[0] for r in rows]


def test_a_run_with_nothing_new_builds_and_publishes_nothing(make_source, point_pipeline_at):
    source = point_pipeline_at(make_source())
    now = ms(utcnow())
    # settled rows (older than the extraction's overlap), so a second run reads nothing
    insert_spend(source, [spend_row(f"r{i}", now - timedelta(hours=i + 1)) for i in range(5)])
    settings = load_settings()
    with dg.instance_for_test() as instance:
        _, built, full_s = run(instance)
        assert {"fct_spend_daily", "fct_budget_alerts", "warehouse"} <= built
        stamp = settings.warehouse_path.stat().st_mtime_ns

        quiet, skipped, quiet_s = run(instance)
        assert skipped <= {k for k in built if k.startswith("raw/")}  # only the raw layer
        assert not skipped & {"fct_spend_daily", "fct_budget_alerts", "warehouse"}
        assert logged(instance, quiet, "nothing new since the warehouse published at")
        assert settings.warehouse_path.stat().st_mtime_ns == stamp  # not copied again
        assert quiet_s < full_s, (quiet_s, full_s)

        insert_spend(source, [spend_row("new", now - timedelta(minutes=30))])
        _, rebuilt, _ = run(instance)
        assert {"fct_spend_daily", "warehouse"} <= rebuilt
        assert "new" in published_ids(settings.warehouse_path)

        # nothing new, but the last evaluation is as old as the configured interval
        due = {"ops": {DBT_ASSETS_NAME: {"config": {"reevaluate_after_minutes": 0}}}}
        _, again, _ = run(instance, due)
        assert {"fct_budget_periods", "fct_budget_alerts", "warehouse"} <= again

        # the build database is lost: rebuilt from the lake, it holds no model until dbt runs
        settings.build_path.unlink()
        _, recovered, _ = run(instance)
        assert {"fct_spend_daily", "warehouse"} <= recovered
        assert published_ids(settings.warehouse_path) == ["new", "r0", "r1", "r2", "r3", "r4"]
    print(f"full run {full_s:.1f} s, nothing new {quiet_s:.1f} s")
