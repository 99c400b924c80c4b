"""What Dagster reads from the local and the production dagster.yaml of the project."""

from __future__ import annotations

import dagster as dg
import pytest

from dagster_project.lib import dagster_instance
from dagster_project.lib.dagster_storage import PooledSqliteEventLogStorage

RUN_MONITORING = {
    "enabled": True,
    "start_timeout_seconds": 180,
    "cancel_timeout_seconds": 180,
    "max_resume_run_attempts": 0,
    "poll_interval_seconds": 20,
    "free_slots_after_run_end_seconds": 30,
}


def assert_common_instance_settings(instance: dg.DagsterInstance) -> None:
    """Pools, run queue, run launcher, run monitoring and telemetry, as both instances have."""
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.run_queue_config.max_concurrent_runs == 1
    assert instance.run_monitoring_settings == RUN_MONITORING
    assert instance.run_monitoring_enabled
    assert instance.get_settings("telemetry") == {"enabled": False}
    launcher = instance.run_launcher
    assert type(launcher).__name__ == "LocalRunLauncher"
    assert type(launcher).__module__ == "dagster_project.lib.run_launcher"
    assert launcher.supports_check_run_worker_health  # run monitoring can fail dead runs


def test_local_instance_keeps_sqlite_storage_and_monitors_runs(tmp_path):
    home = dagster_instance.prepare_dagster_home(tmp_path / "dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert_common_instance_settings(instance)
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.event_log_storage) is PooledSqliteEventLogStorage
        assert instance.get_runs() == []
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        instance.report_engine_event("stored", run)
    assert (home / "history" / "runs.db").is_file()  # in DAGSTER_HOME, as before
    assert (home / "history" / "runs" / f"{run.run_id}.db").is_file()


def test_an_unedited_local_instance_file_gets_the_pooled_event_log_and_an_edited_one_not(
    tmp_path,
):
    written_before = dagster_instance.instance_yaml()  # as spendwh wrote it before
    unedited, edited = tmp_path / "unedited", tmp_path / "edited"
    for home in (unedited, edited):
        home.mkdir()
    (unedited / "dagster.yaml").write_text(written_before)
    (edited / "dagster.yaml").write_text(
        written_before.replace("poll_interval_seconds: 20", "poll_interval_seconds: 5")
    )
    dagster_instance.prepare_dagster_home(unedited)
    dagster_instance.prepare_dagster_home(edited)
    assert (unedited / "dagster.yaml").read_text() == dagster_instance.instance_yaml(home=unedited)
    assert "poll_interval_seconds: 5" in (edited / "dagster.yaml").read_text()
    assert "event_log_storage" not in (edited / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(edited)) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"


@pytest.mark.integration
def test_production_instance_keeps_everything_in_postgres(
    tmp_path, dagster_postgres_url, monkeypatch
):
    (tmp_path / "dagster.yaml").write_text(dagster_instance.instance_yaml("SPENDWH_TEST_PG"))
    monkeypatch.setenv("SPENDWH_TEST_PG", dagster_postgres_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert_common_instance_settings(instance)
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        assert instance.get_run_by_id(run.run_id).job_name == "noop"
        instance.report_engine_event("stored in PostgreSQL", run)  # NOTIFY: needs psycopg2
        [event] = instance.all_logs(run.run_id)
        assert event.dagster_event.message == "stored in PostgreSQL"
    assert dagster_postgres_url not in (tmp_path / "dagster.yaml").read_text()  # env, not file
