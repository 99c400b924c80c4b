"""The Dagster side of the dbt project: pure helpers, and real materializations of the models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_dbt import DbtCliResource

from dagster_project.defs.dbt import assets as dbt_defs
from dagster_project.defs.dbt.project import dbt_project, manifest_is_stale, project_files
from dagster_project.defs.dbt.resources import (
    KEPT_BUILD_FOLDERS,
    ProjectDbtCli,
    dbt_executable,
    dbt_vars,
    profile,
    prune_command_folders,
    write_profiles,
)
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.dbt.translator import dbt_translator, layer_group, table_relations
from dagster_project.settings import (
    DBT_PROJECT_DIR,
    ConfigError,
    default_memory_limit,
    load_settings,
)
from tests.models.raw_data import make_dataset, write_raw_layer

RESOURCES = {"settings": SettingsResource()}


def test_profile_points_dbt_at_the_build_database(tmp_path):
    settings = load_settings(
        {"SPEND_WAREHOUSE_DIR": str(tmp_path), "BUDGET_TIMEZONE": "Europe/Berlin"},
        dotenv_path=tmp_path / "none.env",
    )
    rendered = profile(settings)["spend_warehouse"]
    assert rendered["target"] == "duckdb"
    assert rendered["outputs"]["duckdb"]["path"] == str(tmp_path / "state" / "build.duckdb")
    assert rendered["outputs"]["duckdb"]["settings"] == {
        "memory_limit": default_memory_limit(),
        "threads": "2",
        "preserve_insertion_order": "false",
    }
    assert dbt_vars(settings) == {"budget_timezone": "Europe/Berlin", "raw_schema": "raw"}


@pytest.mark.parametrize(
    ("value", "as_of"),
    [
        ("2026-12-01T00:30:00+01:00", "2026-11-30 23:30:00"),
        ("2026-12-01T00:30:00Z", "2026-12-01 00:30:00"),
        ("2026-12-01 00:30:00.75", "2026-12-01 00:30:00"),
    ],
)
def test_a_fixed_evaluation_instant_reaches_dbt_in_utc(tmp_path, value, as_of):
    settings = load_settings(
        {"SPEND_WAREHOUSE_DIR": str(tmp_path), "SPEND_WAREHOUSE_BUDGET_AS_OF": value},
        dotenv_path=tmp_path / "none.env",
    )
    assert dbt_vars(settings)["budget_as_of"] == as_of


def test_profile_for_postgres_derives_connection_from_url(tmp_path):
    settings = load_settings(
        {
            "SPEND_WAREHOUSE_DIR": str(tmp_path),
            "DBT_TARGET": "postgres",
            "WAREHOUSE_POSTGRES_URL": "postgresql://an%40alyst:s3cret@db.internal:6543/analytics",
            "DBT_POSTGRES_SCHEMA": "finance",
            "DBT_POSTGRES_HOST": "override-host",
        },
        dotenv_path=tmp_path / "none.env",
    )
    output = profile(settings)["spend_warehouse"]["outputs"]["postgres"]
    assert output["host"] == "override-host"
    assert output["port"] == 6543
    assert output["user"] == "an@alyst"
    assert output["password"] == "s3cret"
    assert output["dbname"] == "analytics"
    assert output["schema"] == "finance"
    assert dbt_vars(settings)["raw_schema"] == "finance_raw"
    assert "s3cret" not in repr(settings)


def test_bad_warehouse_postgres_url_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="WAREHOUSE_POSTGRES_URL"):
        load_settings(
            {"DBT_TARGET": "postgres", "WAREHOUSE_POSTGRES_URL": "mysql://x@y/z"},
            dotenv_path=tmp_path / "none.env",
        )


def test_written_profile_is_private_and_has_the_committed_profiles_shape(tmp_path):
    """The pipeline's profile and the committed dbt/profiles.yml (for hand runs) stay alike."""
    settings = load_settings({"SPEND_WAREHOUSE_DIR": str(tmp_path)}, dotenv_path=tmp_path / "x")
    directory = write_profiles(settings, tmp_path / "profile")
    written = yaml.safe_load((directory / "profiles.yml").read_text())
    assert (directory / "profiles.yml").stat().st_mode & 0o777 == 0o600
    committed = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    assert written.keys() == committed.keys()
    # The spark output is for hand runs and its parity test: the pipeline builds duckdb or postgres.
    outputs = {k: v for k, v in committed["spend_warehouse"]["outputs"].items() if k != "spark"}
    assert written["spend_warehouse"]["outputs"].keys() == outputs.keys()
    for name, output in outputs.items():
        mine = written["spend_warehouse"]["outputs"][name]
        assert mine.keys() == output.keys(), name
        assert (mine["type"], mine["threads"]) == (output["type"], output["threads"]), name


def test_manifest_is_stale_when_missing_or_older(tmp_path):
    model = tmp_path / "models" / "m.sql"
    model.parent.mkdir()
    model.write_text("select 1")
    manifest = tmp_path / "target" / "manifest.json"
    files = project_files(tmp_path)
    assert files == [model]
    assert manifest_is_stale(manifest, files)
    manifest.parent.mkdir()
    manifest.write_text("{}")
    assert not manifest_is_stale(manifest, files)
    later = time.time() + 10
    os.utime(model, (later, later))
    assert manifest_is_stale(manifest, files)


def _command_folder(folder: Path, name: str, written: float, *, log: float | None = None) -> Path:
    path = folder / name
    (path / "compiled").mkdir(parents=True)
    (path / "compiled" / "model.sql").write_text("select 1")
    if log is not None:
        (path / "dbt.log").write_text("{}")
        os.utime(path / "dbt.log", (log, log))
    os.utime(path, (written, written))
    return path


def test_earlier_command_folders_are_removed_but_the_last_and_the_active(tmp_path):
    now = time.time()
    day = 86400
    old = [_command_folder(tmp_path, f"build-old{i}", now - (10 - i) * day) for i in range(4)]
    recent = [_command_folder(tmp_path, f"build-new{i}", now - (2 - i) * day) for i in range(2)]
    other = _command_folder(tmp_path, "docs-old", now - 10 * day)
    (tmp_path / "partial_parse.msgpack").write_bytes(b"parse")
    # half-removed by a prune that was killed
    _command_folder(tmp_path, ".removing-build-old9-0123abcd", now - 11 * day)

    assert sorted(prune_command_folders(tmp_path, "build", keep=2, now=now)) == sorted(old)
    assert all(path.is_dir() for path in [*recent, other])
    assert (tmp_path / "partial_parse.msgpack").exists()
    assert not list(tmp_path.glob(".removing-*"))  # nothing half-removed left behind

    # made days ago, but its dbt.log was written a minute ago: a command still running stays
    running = _command_folder(tmp_path, "build-running", now - 9 * day, log=now - 60)
    assert sorted(prune_command_folders(tmp_path, "build", keep=0, now=now)) == sorted(recent)
    assert running.is_dir()
    assert prune_command_folders(tmp_path, "build", keep=0, now=now + 2 * 3600) == [running]


def test_layer_group_follows_the_models_folder():
    assert layer_group({"resource_type": "model", "fqn": ["p", "marts", "x", "m"]}) == ("marts")
    assert layer_group({"resource_type": "source", "fqn": ["p", "raw", "t"]}) is None
    assert dbt_defs.build_args() == ["build", "--exclude-resource-type", "unit_test"]
    assert dbt_defs.build_args(full_refresh=True)[-1] == "--full-refresh"


def _dbt_assets() -> dg.AssetsDefinition:
    definitions = dbt_defs.defs()
    return next(iter(definitions.assets))


@pytest.mark.integration
def test_table_relations_follow_the_manifest_file_as_it_changes(tmp_path):
    def node(name: str, materialized: str) -> dict:
        return {
            "unique_id": f"model.p.{name}",
            "resource_type": "model",
            "name": name,
            "fqn": ["p", "marts", name],
            "original_file_path": f"models/marts/{name}.sql",
            "config": {"materialized": materialized},
            "relation_name": f'"db"."main"."{name}"',
        }

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"nodes": {"a": node("fct_a", "table")}}))
    assert list(table_relations(manifest, dbt_translator()).values()) == ['"db"."main"."fct_a"']
    nodes = {"a": node("fct_a", "view"), "b": node("fct_b", "incremental")}
    manifest.write_text(json.dumps({"nodes": nodes}))  # a new parse, other size
    assert list(table_relations(manifest, dbt_translator()).values()) == ['"db"."main"."fct_b"']


@pytest.mark.integration
def test_the_dbt_cli_knows_its_version_without_asking_dbt_and_opens_no_adapter(tmp_path):
    project = dbt_project()
    ours = ProjectDbtCli(project_dir=project, dbt_executable=dbt_executable())
    asked = DbtCliResource(project_dir=project, dbt_executable=dbt_executable())
    assert ours._cli_version == asked._cli_version  # asked runs `dbt --version`
    invocation = ours.cli(["parse"], target_path=tmp_path / "target")
    invocation.wait()
    assert invocation.is_successful()
    assert invocation.adapter is None


def test_sources_share_the_raw_asset_keys_and_tests_are_checks():
    definitions = dbt_defs.defs()
    assets = next(iter(definitions.assets))
    graph = dg.Definitions.merge(
        definitions, dg.Definitions(resources=RESOURCES)
    ).resolve_asset_graph()
    upstream = {key for key in graph.get_all_asset_keys() if key not in assets.keys}
    assert dg.AssetKey(["raw", "spend_logs"]) in upstream
    assert dg.AssetKey(["raw", "verification_tokens"]) in upstream
    assert dg.AssetKey(["fct_budget_periods"]) in assets.keys
    assert dg.AssetKey(["fct_budget_threshold_crossings"]) in assets.keys
    check_names = {check.name for check in assets.check_specs}
    assert "unique_fct_budget_periods_budget_period_id" in check_names
    manifest = json.loads(dbt_project().manifest_path.read_text())
    data_tests = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and node.get("attached_node")
    }
    assert len(data_tests) > 40
    assert check_names == data_tests


def _warehouse(
    tmp_path: Path, monkeypatch, duplicate_request: bool = False, omit: frozenset[str] = frozenset()
) -> Path:
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path))
    monkeypatch.setenv("DBT_TARGET", "duckdb")
    data = make_dataset(requests=400)
    if duplicate_request:
        data.rows("spend_logs").append(dict(data.rows("spend_logs")[0]))
    build_path = tmp_path / "state" / "build.duckdb"
    write_raw_layer(build_path, data, omit=omit)
    return build_path


# An older proxy: no organizations, no deleted-row copies (the extraction then lands no table).
OPTIONAL_ABSENT = frozenset(
    {"organizations", "deleted_verification_tokens", "deleted_teams", "projects"}
)


@pytest.mark.integration
def test_materialize_builds_marts_in_the_build_database(tmp_path, monkeypatch):
    build_path = _warehouse(tmp_path, monkeypatch, omit=OPTIONAL_ABSENT)
    assets = _dbt_assets()
    result = dg.materialize([assets], resources=RESOURCES)
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["fct_spend_daily"]) in materialized
    row_counts = {
        e.asset_key: e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
        if "dagster/row_count" in e.materialization.metadata
    }
    with duckdb.connect(str(build_path), read_only=True) as conn:
        daily_rows = conn.execute("select count(*) from main.fct_spend_daily").fetchall()[0][0]
    assert row_counts[dg.AssetKey(["fct_spend_daily"])] == daily_rows > 0
    assert dg.AssetKey(["staging", "stg_proxy__spend_logs"]) not in row_counts  # views: not counted
    checks = result.get_asset_check_evaluations()
    assert checks
    assert all(c.passed or c.severity == dg.AssetCheckSeverity.WARN for c in checks)
    with duckdb.connect(str(build_path), read_only=True) as conn:
        total = conn.execute("select sum(request_count) from main.fct_spend_daily").fetchone()
        assert total == conn.execute("select count(*) from raw.spend_logs").fetchone()
        # no organization table: only the ids the logs name, flagged as unknown to the proxy
        assert conn.execute(
            "select count(*) from main.dim_organizations where is_known"
        ).fetchone() == (0,)
        organization_periods = conn.execute(
            "select count(*) from main.fct_budget_periods where entity_type = 'organization'"
        ).fetchone()
        assert organization_periods == (0,)


@pytest.mark.integration
def test_a_build_hands_its_parse_to_the_next_build(tmp_path, monkeypatch):
    """The next build skips dbt's parse: it starts from the parse the last build kept
    (keep_partial_parse), which has its profile and vars, not from one made without them.

    dagster-dbt's folder of invocations (``DBT_TARGET_PATH``) is the test's own: the builds of
    tests running beside this one, with other settings, keep their parse in the shared folder.
    The kept parse must land where dagster-dbt reads it, not in the project's ``target``."""
    _warehouse(tmp_path, monkeypatch)
    target = tmp_path / "dbt-target"
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    # the folders of builds a week ago: each build removes them but the last few
    week_ago = time.time() - 7 * 86400
    stale = [
        _command_folder(target, f"{dbt_defs.DBT_ASSETS_NAME}-old{i}", week_ago + i)
        for i in range(KEPT_BUILD_FOLDERS + 1)
    ]
    assets = _dbt_assets()
    config = {"ops": {assets.op.name: {"config": {"skip_unchanged": False}}}}
    logs = []
    for _ in range(2):
        result = dg.materialize([assets], resources=RESOURCES, run_config=config)
        assert result.success
        (log,) = target.glob(f"{assets.op.name}-{result.run_id[:7]}-*/dbt.log")
        logs.append(log.read_text())
    assert "Nothing changed, skipping partial parsing." in logs[1]
    assert "Unable to do partial parsing" not in logs[1]
    # each build removed the oldest stale folder: the first build's folder and the newest
    # stale ones were the last KEPT_BUILD_FOLDERS when the second build started
    kept = [path for path in stale if path.exists()]
    assert kept == stale[-(KEPT_BUILD_FOLDERS - 1) :]


@pytest.mark.integration
def test_failing_upstream_test_stops_downstream_marts(tmp_path, monkeypatch):
    _warehouse(tmp_path, monkeypatch, duplicate_request=True)
    assets = _dbt_assets()
    selection = [
        dg.AssetKey(["staging", "stg_proxy__spend_logs"]),
        dg.AssetKey(["intermediate", "int_spend_logs_attributed"]),
        dg.AssetKey(["fct_spend_daily"]),
        dg.AssetKey(["fct_budget_periods"]),
        dg.AssetKey(["staging", "stg_proxy__users"]),
        dg.AssetKey(["dim_users"]),  # also names the users only the logs know
        dg.AssetKey(["staging", "stg_proxy__teams"]),
    ]
    result = dg.materialize(
        [assets],
        selection=selection,
        resources=RESOURCES,
        raise_on_error=False,
    )
    assert not result.success
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert "primary_key_stg_proxy__spend_logs_request_id" in failed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["staging", "stg_proxy__spend_logs"]) in materialized
    assert dg.AssetKey(["fct_spend_daily"]) not in materialized
    assert dg.AssetKey(["fct_budget_periods"]) not in materialized
    assert dg.AssetKey(["dim_users"]) not in materialized
    assert dg.AssetKey(["staging", "stg_proxy__teams"]) in materialized  # independent of the logs
    assert DBT_PROJECT_DIR.is_dir()
