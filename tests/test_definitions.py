"""The Dagster code location: every asset, job, schedule, sensor and check is present, the lineage
runs from the raw tables through the dbt models to the alerts, and the location validates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.defs.dbt.project import dbt_project
from dagster_project.lib.ingest.contract import SNAPSHOT_TABLES
from tests.models.dbt_runner import MARTS

# Loading the definitions reads the dbt manifest and runs `dbt parse` when it is stale.
pytestmark = pytest.mark.integration

RAW_FACTS = {"raw/spend_logs", "raw/error_logs"}
ALERTS = "fct_budget_alerts"
JOBS = {"spend_warehouse_job", "extract_job", "build_job", "spend_warehouse_rollback_job"}
SCHEDULES = {
    "spend_warehouse_schedule": ("extract_job", "*/15 * * * *"),
    "spend_warehouse_rollback_schedule": ("spend_warehouse_rollback_job", "30 3 * * *"),
}
SENSORS = {"deliver_budget_alerts", "alert_on_pipeline_failure", "spend_warehouse_build_sensor"}
PYTHON_CHECKS = {
    ("raw/spend_logs", "reconciliation"),
    ("raw/spend_logs", "freshness"),
    ("raw/error_logs", "reconciliation"),
    ("raw/error_logs", "freshness"),
    (ALERTS, "mirror_matches_ledger"),
    (ALERTS, "no_failed_deliveries"),
}


@pytest.fixture(scope="module")
def definitions(clean_environment) -> dg.Definitions:
    from dagster_project.definitions import defs

    return defs()


@pytest.fixture(scope="module")
def clean_environment():
    """Default schedules: the cron variables of a user's shell must not leak into the test."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "SPEND_WAREHOUSE_SCHEDULE",
            "SPEND_WAREHOUSE_ROLLBACK_SCHEDULE",
            "DBT_TARGET",
            "SPEND_WAREHOUSE_EXECUTOR",
        ):
            patch.delenv(name, raising=False)
        yield patch


@pytest.fixture(scope="module")
def repository(definitions) -> dg.RepositoryDefinition:
    return definitions.get_repository_def()


@pytest.fixture(scope="module")
def asset_keys(repository) -> dict[str, dg.AssetKey]:
    return {key.to_user_string(): key for key in repository.asset_graph.get_all_asset_keys()}


@pytest.fixture(scope="module")
def dbt_models() -> dict[str, dict]:
    """The dbt project's models by name, from the manifest the assets are built from."""
    manifest = json.loads(Path(dbt_project().manifest_path).read_text())
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == "spend_warehouse"
    }


def test_raw_layer_assets_are_materialized_by_the_extraction(repository, asset_keys):
    expected = RAW_FACTS | {f"raw/{table}" for table in SNAPSHOT_TABLES.values()}
    assert expected <= set(asset_keys)
    for name in expected:
        node = repository.asset_graph.get(asset_keys[name])
        assert node.is_materializable, f"{name} is only a source, nothing extracts it"
        assert node.group_name == "raw"


def test_every_dbt_model_is_an_asset_grouped_by_layer(repository, asset_keys, dbt_models):
    assert set(dbt_models) >= set(MARTS)
    by_model = {key.rsplit("/", 1)[-1]: key for key in asset_keys}
    for name, node in dbt_models.items():
        assert name in by_model, f"dbt model {name} is not an asset"
        layer = node["fqn"][1]
        key = by_model[name]
        assert repository.asset_graph.get(asset_keys[key]).group_name == layer
        assert key == (name if layer == "marts" else f"{layer}/{name}")


def test_the_alert_asset_is_present(repository, asset_keys):
    node = repository.asset_graph.get(asset_keys[ALERTS])
    assert node.group_name == "alerts"
    assert {dg.AssetKey("fct_budget_periods"), dg.AssetKey("fct_budget_threshold_crossings")} <= (
        node.parent_keys
    )


def test_lineage_runs_from_raw_tables_through_dbt_to_alerts(repository, asset_keys):
    graph = repository.asset_graph
    ancestors = {k.to_user_string() for k in graph.get_ancestor_asset_keys(asset_keys[ALERTS])}
    assert {
        "raw/spend_logs",
        "raw/verification_tokens",
        "raw/budgets",
        "staging/stg_proxy__spend_logs",
        "fct_budget_periods",
    } <= ancestors
    errors = {
        k.to_user_string() for k in graph.get_ancestor_asset_keys(asset_keys["fct_errors_daily"])
    }
    assert {"raw/error_logs", "staging/stg_proxy__error_logs"} <= errors


def test_every_asset_has_a_description(repository):
    graph = repository.asset_graph
    undescribed = sorted(
        key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).description
    )
    assert not undescribed


def test_jobs(definitions, repository, asset_keys):
    assert {job.name for job in repository.get_all_jobs()} >= JOBS
    everything = definitions.resolve_job_def("spend_warehouse_job").asset_layer
    assert {k.to_user_string() for k in everything.executable_asset_keys} == set(asset_keys)
    extract = definitions.resolve_job_def("extract_job").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in extract} == {
        key for key in asset_keys if key.startswith("raw/")
    }
    build = definitions.resolve_job_def("build_job").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in build} == {
        key for key in asset_keys if not key.startswith("raw/")
    }


def test_jobs_run_their_steps_in_process_by_default(definitions):
    """``SPEND_WAREHOUSE_EXECUTOR`` unset: every step in the run worker's process."""
    for name in JOBS:
        assert definitions.resolve_job_def(name).executor_def.name == "in_process"


def test_schedules(repository):
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert set(schedules) == set(SCHEDULES)
    for name, (job, cron) in SCHEDULES.items():
        assert schedules[name].job_name == job
        assert schedules[name].cron_schedule == cron
        assert schedules[name].execution_timezone == "UTC"
        # Running by default: `spendwh ui` keeps the warehouse fresh without a click.
        assert schedules[name].default_status == dg.DefaultScheduleStatus.RUNNING


def test_sensors_run_by_default(repository):
    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}
    assert set(sensors) == SENSORS
    for name in SENSORS:
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING


def test_asset_checks_cover_raw_tables_models_and_alerts(repository, asset_keys, dbt_models):
    checks = {
        (k.asset_key.to_user_string(), k.name) for k in repository.asset_graph.asset_check_keys
    }
    assert checks >= PYTHON_CHECKS
    assert ("fct_spend_daily", "unique_fct_spend_daily_spend_daily_id") in checks
    assert ("fct_budget_periods", "unique_fct_budget_periods_budget_period_id") in checks
    checked = {asset for asset, _ in checks}
    unchecked_marts = sorted(set(MARTS) - checked)
    assert not unchecked_marts, f"marts without a dbt test: {unchecked_marts}"
    assert {asset for asset, _ in checks} <= set(asset_keys)


def test_code_location_validates_from_a_plain_shell(tmp_path):
    """``dagster definitions validate`` in a fresh process, as CI or a deployment would run it."""
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "PYTHONPATH"}}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "dagster_project.definitions",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Validation successful" in output


def definitions_outline(repository: dg.RepositoryDefinition) -> dict[str, object]:
    """Every asset, asset check, job, schedule (with its cron) and sensor, by name."""
    graph = repository.asset_graph
    return {
        "assets": sorted(key.to_user_string() for key in graph.get_all_asset_keys()),
        "asset_checks": sorted(
            f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys
        ),
        "jobs": sorted(  # not Dagster's implicit asset job
            job.name for job in repository.get_all_jobs() if not job.name.startswith("__")
        ),
        "schedules": {s.name: s.cron_schedule for s in repository.schedule_defs},
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
    }


def test_definitions_match_the_snapshot(repository, snapshot):
    """A renamed, lost or added asset, check, job, schedule or sensor shows here.

    After a deliberate change to the graph: ``pytest tests/test_definitions.py
    --snapshot-update`` and commit ``tests/__snapshots__/test_definitions.ambr`` with it.
    """
    assert definitions_outline(repository) == snapshot
