"""Real Dagster runs of the raw assets and their checks: reconciliation, rollback, freshness."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import dagster as dg
import psycopg
import pytest

from dagster_project.defs.ingest import checks
from dagster_project.defs.ingest.assets import (
    raw_error_logs,
    raw_key,
    raw_snapshots,
    raw_spend_logs,
)
from dagster_project.defs.pipeline.schedules import extract_job, rollback_run_config, schedules
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.ingest.contract import SNAPSHOT_TABLES
from dagster_project.lib.ingest.source import SPEND_LOGS
from dagster_project.settings import DEFAULT_SCHEDULE
from tests.ingest.helpers import Warehouse, insert_spend, ms, spend_row, utcnow

pytestmark = pytest.mark.integration

OLD_SCHEMA = "20251101000000"  # before created_at: the startTime cursor

RAW_ASSETS = [raw_spend_logs, raw_error_logs, raw_snapshots, checks.raw_fact_checks]
RESOURCES = {"settings": SettingsResource()}


def materialize(assets=RAW_ASSETS, **kwargs) -> dg.ExecuteInProcessResult:
    """A real in-process run of ``assets`` with the pipeline's resources."""
    return dg.materialize(assets, resources=RESOURCES, **kwargs)


def freshness_now(source):
    """The SpendLogs freshness check, evaluated on its own."""
    from dagster_project.lib.ingest.source import SourceSession
    from dagster_project.settings import load_settings

    settings = load_settings()
    with SourceSession(source.url, source.prefix) as session:
        return checks.freshness(SPEND_LOGS, session, settings)


@pytest.fixture
def env(make_source, tmp_path, monkeypatch):
    """A fresh source and warehouse, configured through the environment like production."""
    source = make_source()
    monkeypatch.setenv("DATABASE_URL", source.url)
    monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return source, Warehouse(tmp_path / "wh")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """Check evaluations of a run by ``<table>:<check>``."""
    return {
        f"{e.asset_key.path[-1]}:{e.check_name}": e for e in result.get_asset_check_evaluations()
    }


def test_late_row_beyond_the_window_fails_reconciliation_and_rollback_repairs(env):
    source, wh = env
    now = ms(utcnow())
    yesterday = now - timedelta(days=1)
    insert_spend(source, [spend_row(f"r{i}", yesterday + timedelta(minutes=i)) for i in range(5)])
    first = materialize()
    assert first.success
    evaluations = check_results(first)
    assert evaluations["spend_logs:reconciliation"].passed
    assert evaluations["spend_logs:freshness"].passed

    # committed late, with a created_at long before the watermark's overlap
    wm = wh.manifest().state["watermark"]
    lost = spend_row(
        "lost", yesterday, spend=7.0, created_at=now - timedelta(hours=2), updated_at=now
    )
    insert_spend(source, [lost])
    second = materialize(raise_on_error=False)
    assert not second.success  # a blocking check failed
    evaluation = check_results(second)["spend_logs:reconciliation"]
    assert not evaluation.passed
    assert evaluation.metadata["reused"].value is False  # the source's write counts moved
    assert yesterday.date().isoformat() in evaluation.description
    assert evaluation.metadata["mismatched_days"].value == yesterday.date().isoformat()
    assert wh.manifest().state["watermark"] == wm

    repaired = materialize(run_config=rollback_run_config())
    assert repaired.success
    assert check_results(repaired)["spend_logs:reconciliation"].passed
    assert ("lost", 7.0) in wh.query("SELECT request_id, spend FROM raw.spend_logs")


def reused(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Whether each reconciliation of a run stood on an earlier comparison, by table."""
    return {
        name.split(":")[0]: evaluation.metadata["reused"].value
        for name, evaluation in check_results(result).items()
        if name.endswith(":reconciliation")
    }


def clear_of_midnight(margin: timedelta = timedelta(minutes=2)) -> None:
    """Wait for UTC midnight when it is less than ``margin`` away: the reconciliation compares
    the last days up to the source's today, so a run after midnight rightly compares again
    instead of standing on a comparison made before it."""
    now = utcnow()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
    if midnight - now < margin:
        time.sleep((midnight - now).total_seconds() + 1)


def test_a_passing_reconciliation_stands_while_neither_side_changes(env, monkeypatch):
    source, _ = env
    clear_of_midnight()  # every run below in one UTC day
    now = ms(utcnow())
    yesterday = now - timedelta(days=1)
    insert_spend(source, [spend_row(f"r{i}", yesterday + timedelta(minutes=i)) for i in range(3)])
    # (ErrorLogs is empty: its check only looks for rows, there is no comparison to reuse)
    first = materialize()
    assert reused(first) == {"spend_logs": False, "error_logs": False}
    quiet = materialize()
    assert reused(quiet) == {"spend_logs": True, "error_logs": False}
    evaluation = check_results(quiet)["spend_logs:reconciliation"]
    assert evaluation.passed
    compared = check_results(first)["spend_logs:reconciliation"].metadata
    assert evaluation.metadata["source_rows"] == compared["source_rows"]
    assert evaluation.metadata["compared_at"] == compared["compared_at"]
    assert "unchanged since the comparison at" in evaluation.description

    # a new row: the source's write counts and the lake move, so both are compared again
    insert_spend(source, [spend_row("r3", now - timedelta(minutes=10))])
    assert reused(materialize())["spend_logs"] is False
    assert reused(materialize())["spend_logs"] is True

    # a row lost by the extraction fails every run until the rollback, never reused
    lost = spend_row("lost", yesterday, created_at=now - timedelta(hours=2), updated_at=now)
    insert_spend(source, [lost])
    for _ in range(2):
        failed = materialize(raise_on_error=False)
        assert not check_results(failed)["spend_logs:reconciliation"].passed
        assert reused(failed)["spend_logs"] is False

    # switched off: every run compares
    assert check_results(materialize(run_config=rollback_run_config()))[
        "spend_logs:reconciliation"
    ].passed
    monkeypatch.setenv("SPEND_WAREHOUSE_UNCHANGED_MINUTES", "0")
    assert reused(materialize())["spend_logs"] is False
    assert reused(materialize())["spend_logs"] is False


def extracted(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The SpendLogs extraction's metadata in a run, as plain values."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == raw_key("spend_logs"):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError("raw/spend_logs was not materialized")


def test_a_quiet_source_is_not_read_again_until_it_changes(env, monkeypatch):
    source, wh = env
    now = ms(utcnow())
    insert_spend(source, [spend_row("q1", now - timedelta(hours=1))])
    first = extracted(materialize())
    assert (first["rows_stored"], first["unchanged_since"]) == (1, None)
    watermark = first["watermark"]

    quiet = extracted(materialize())
    assert quiet["unchanged_since"] is not None  # the read was skipped
    assert (quiet["rows_read"], quiet["chunks"], quiet["watermark"]) == (0, 0, watermark)

    # any write moves the source's change marker: the next run reads (and finds the new row)
    insert_spend(source, [spend_row("q2", now - timedelta(minutes=30))])
    after_write = extracted(materialize())
    assert (after_write["rows_stored"], after_write["unchanged_since"]) == (1, None)
    assert extracted(materialize())["unchanged_since"] is not None
    assert sorted(r for (r,) in wh.query("SELECT request_id FROM raw.spend_logs")) == ["q1", "q2"]

    # the rollback always reads; switched off, every run reads
    rollback = materialize(run_config=rollback_run_config())
    assert extracted(rollback)["unchanged_since"] is None
    monkeypatch.setenv("SPEND_WAREHOUSE_UNCHANGED_MINUTES", "0")
    assert extracted(materialize())["unchanged_since"] is None
    assert extracted(materialize())["unchanged_since"] is None


def test_a_write_not_yet_counted_is_read_by_a_later_run_once(env):
    """A write reaches the change marker only when PostgreSQL flushes the writer's statistics:
    at once when its connection goes idle, or up to 10 s later if it flushed less than a second
    before. A run in between may skip the read as if the write came after it; the row is then
    read by the first run after the flush, once."""
    source, wh = env
    now = ms(utcnow())
    insert_spend(source, [spend_row("c1", now - timedelta(hours=1))])
    assert extracted(materialize())["rows_stored"] == 1
    with psycopg.connect(source.url, autocommit=True) as writer:  # a proxy connection, kept open
        writer.execute("CREATE TABLE flush_pace (x int)")  # the writer's counts flush now, so
        # its writes in the next second are counted when its idle timeout fires (10 s)
        row = spend_row("c2", now - timedelta(minutes=30))
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join(["%s"] * len(row))
        writer.execute(
            f"INSERT INTO {source.table('SpendLogs')} ({cols}) VALUES ({marks})",
            list(row.values()),
        )  # counted up to 10 s later
        pending = extracted(materialize())
        if pending["unchanged_since"] is not None:  # the marker did not move yet: nothing read
            assert (pending["rows_read"], pending["rows_stored"]) == (0, 0)
        writer.execute("SELECT pg_stat_force_next_flush()")  # the idle timeout, brought forward
    after = extracted(materialize())
    assert pending["rows_stored"] + after["rows_stored"] == 1
    assert sorted(r for (r,) in wh.query("SELECT request_id FROM raw.spend_logs")) == ["c1", "c2"]


def test_the_start_time_cursor_is_read_on_every_run(make_source, tmp_path, monkeypatch):
    # startTime comes from the proxy's clock and may lie ahead of the database's: a row the last
    # read's window excluded can enter the next one without any write
    source = make_source(until=OLD_SCHEMA)
    monkeypatch.setenv("DATABASE_URL", source.url)
    monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
    monkeypatch.chdir(tmp_path)
    insert_spend(source, [spend_row("s1", ms(utcnow()) - timedelta(hours=1))])
    for _ in range(2):
        metadata = extracted(materialize())
        assert metadata["cursor"] == "startTime"
        assert metadata["unchanged_since"] is None


def test_materializations_carry_extraction_metadata(env):
    source, _ = env
    insert_spend(source, [spend_row("m1", utcnow() - timedelta(hours=1))])
    result = materialize()
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    }
    spend = mats["raw/spend_logs"]
    assert spend["rows_read"].value == 1
    assert spend["rows_stored"].value == 1
    assert spend["dagster/row_count"].value == 1
    assert spend["watermark"].value
    assert spend["drift_columns"].value == "none"
    assert mats["raw/verification_tokens"]["status"].value == "present"
    assert len([k for k in mats if k.startswith("raw/")]) == len(SNAPSHOT_TABLES) + 3
    assert "raw/budget_limit_history" in mats


def test_quiet_proxy_is_fresh_and_a_lagging_lake_is_stale(env, monkeypatch):
    source, _ = env
    old = ms(utcnow() - timedelta(hours=5))
    insert_spend(source, [spend_row("old", old, created_at=old, updated_at=old)])
    assert materialize().success
    assert freshness_now(source).passed  # hours since the last request: still fresh

    monkeypatch.setenv("SPEND_WAREHOUSE_FRESHNESS_MINUTES", "5")
    newer = old + timedelta(minutes=20)
    insert_spend(source, [spend_row("new", newer, created_at=newer, updated_at=newer)])
    stale = freshness_now(source)  # not extracted yet: 20 minutes behind
    assert not stale.passed
    assert stale.metadata["lag_minutes"].value == pytest.approx(20.0)


def test_new_source_column_is_a_warning_check_not_a_failure(env):
    source, _ = env
    with source.connect() as conn:
        conn.execute(f"ALTER TABLE {source.table('SpendLogs')} ADD COLUMN flat_cost float8")
    insert_spend(source, [spend_row("d1", utcnow() - timedelta(hours=1), flat_cost=0.5)])
    result = materialize()
    assert result.success  # drift does not break extraction
    evaluation = check_results(result)["spend_logs:schema_drift"]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["extra_columns"].value == "flat_cost"
    assert check_results(result)["error_logs:schema_drift"].passed


def test_absent_spend_logs_fail_freshness(env):
    source, _ = env
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('SpendLogs')}")
    result = materialize(raise_on_error=False)
    evaluations = check_results(result)
    assert not evaluations["spend_logs:freshness"].passed
    assert "absent" in evaluations["spend_logs:freshness"].description
    assert not result.success


def test_terminal_errors_are_not_retried(env):
    source, _ = env
    with source.connect() as conn:
        conn.execute(f'ALTER TABLE {source.table("SpendLogs")} RENAME COLUMN "startTime" TO st')
    result = materialize([raw_spend_logs], raise_on_error=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "startTime" in failure.event_specific_data.error.message


def test_a_run_without_a_source_fails_at_once_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SPEND_WAREHOUSE_ENV_FILE", raising=False)
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
    monkeypatch.chdir(tmp_path)
    result = materialize([raw_spend_logs], raise_on_error=False)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "DATABASE_URL is not set" in message
    assert f"no demo proxy under {tmp_path / 'wh'}" in message


def test_jobs_and_schedule_definitions(monkeypatch):
    defs = schedules()
    by_name = {s.name: s for s in defs.schedules}
    assert by_name["spend_warehouse_schedule"].cron_schedule == DEFAULT_SCHEDULE
    assert by_name["spend_warehouse_schedule"].job_name == "extract_job"
    assert by_name["spend_warehouse_rollback_schedule"].job_name == "spend_warehouse_rollback_job"
    monkeypatch.setenv("SPEND_WAREHOUSE_SCHEDULE", "*/5 * * * *")
    assert schedules().schedules[0].cron_schedule == "*/5 * * * *"
    assert extract_job.name == "extract_job"
