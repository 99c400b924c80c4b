"""Nothing new, nothing done: the pipeline on a real source, with and without new rows.

A run whose extraction stores nothing skips the dbt build, the alert evaluation and the publish
(the analysts' file is not touched); a new row, a budget evaluation that is due, or a build
database rebuilt from the lake each bring the full run back. On the scheduled path the build
sensor makes that decision, so a quiet extraction is followed by no build run at all.
"""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from dagster_project.definitions import defs as load_defs
from dagster_project.defs.dbt.assets import DBT_ASSETS_NAME
from dagster_project.defs.pipeline.schedules import build_after_extraction
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.run_launcher import in_process_run_tags
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


def extract(instance, tags: dict[str, str] | None = None) -> dg.DagsterRun:
    result = (
        load_defs()
        .resolve_job_def("extract_job")
        .execute_in_process(instance=instance, raise_on_error=False, tags=tags or {})
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result.dagster_run


def sensor_after(instance, extraction: dg.DagsterRun):
    """The build sensor's answer to the successful ``extraction``, as the daemon evaluates it."""
    success = instance.all_logs(extraction.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0]
    context = dg.build_run_status_sensor_context(
        sensor_name=build_after_extraction.name,
        dagster_instance=instance,
        dagster_run=extraction,
        dagster_event=success.dagster_event,
        resources={"settings": SettingsResource()},
    )
    return build_after_extraction(context)


def test_the_schedule_extracts_and_the_sensor_builds_only_what_is_due(
    make_source, point_pipeline_at
):
    """The scheduled path: ``extract_job`` alone, then ``build_job`` when the build sensor finds a
    build due; with nothing new no build run is requested at all."""
    source = point_pipeline_at(make_source())
    now = ms(utcnow())
    insert_spend(source, [spend_row(f"r{i}", now - timedelta(hours=i + 1)) for i in range(3)])
    settings = load_settings()
    with dg.instance_for_test() as instance:
        first = extract(instance)
        request = sensor_after(instance, first)
        assert isinstance(request, dg.RunRequest), request
        assert request.run_key == first.run_id  # one build per extraction, never two
        build = load_defs().resolve_job_def("build_job")
        built = build.execute_in_process(instance=instance, raise_on_error=False)
        assert built.success
        keys = {e.asset_key.to_user_string() for e in built.get_asset_materialization_events()}
        assert {"fct_spend_daily", "fct_budget_alerts", "warehouse"} <= keys
        assert not any(key.startswith("raw/") for key in keys)  # the extraction's job

        quiet = sensor_after(instance, extract(instance))
        assert isinstance(quiet, dg.SkipReason), quiet
        assert "nothing new since the warehouse published at" in quiet.skip_message

        insert_spend(source, [spend_row("new", now - timedelta(minutes=30))])
        assert isinstance(sensor_after(instance, extract(instance)), dg.RunRequest)

        # `spendwh run` builds after its own extraction: the sensor leaves it alone
        own = sensor_after(instance, extract(instance, tags=in_process_run_tags()))
        assert isinstance(own, dg.SkipReason)
        assert "spendwh run" in own.skip_message

        settings.build_path.unlink()  # lost: the next extraction rebuilds only the raw layer
        assert isinstance(sensor_after(instance, extract(instance)), dg.RunRequest)


def test_a_build_out_of_duckdb_memory_names_the_setting_and_the_fix(
    make_source, point_pipeline_at, monkeypatch
):
    """DuckDB out of memory in the dbt build: the failure says which models, under which limit,
    and what to set (not only "the dbt CLI process failed"); nothing is published."""
    source = point_pipeline_at(make_source())
    now = ms(utcnow())
    insert_spend(source, [spend_row(f"r{i}", now - timedelta(minutes=i + 10)) for i in range(400)])
    with dg.instance_for_test() as instance:
        extract(instance)
        monkeypatch.setenv("SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT", "1MB")
        result = (
            load_defs()
            .resolve_job_def("build_job")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error
    assert "DuckDB ran out of memory building " in failure.message
    assert "SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT=1MB" in failure.message
    assert "raise SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT" in failure.message
    assert not load_settings().warehouse_path.exists()
