"""``spendwh run``: one in-process run with progress lines, then the published warehouse."""

from __future__ import annotations

import argparse
from datetime import timedelta

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.commands.run import job_name, run_config
from dagster_project.lib.ingest.contract import SNAPSHOT_TABLES
from dagster_project.settings import ConfigError
from tests.ingest.helpers import insert_spend, spend_row, utcnow

pytestmark = pytest.mark.integration


@pytest.fixture
def configured(make_source, tmp_path, monkeypatch):
    source = make_source()
    monkeypatch.setenv("DATABASE_URL", source.url)
    monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
    monkeypatch.chdir(tmp_path)
    return source, tmp_path / "wh"


def test_extract_only_prints_progress_and_leaves_the_published_warehouse_alone(configured, capsys):
    """extract_job lands the raw layer; publishing belongs to the whole job (its marts would be
    older than its raw tables otherwise)."""
    source, wh = configured
    insert_spend(source, [spend_row(f"r{i}", utcnow() - timedelta(hours=i)) for i in range(12)])
    assert main(["run", "--extract-only"]) == 0
    out = capsys.readouterr().out
    assert "ok    raw/spend_logs" in out
    assert "rows_stored=12" in out
    assert "pass  raw/spend_logs:reconciliation" in out
    assert "raw layer only" in out
    raw_assets = len(SNAPSHOT_TABLES) + 3  # the snapshots, the limit history, the two facts
    assert f"summary: {raw_assets} assets materialized, 6 checks passed" in out
    assert not (wh / "warehouse.duckdb").exists()
    con = duckdb.connect(str(wh / "state" / "build.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM raw.spend_logs").fetchall() == [(12,)]
    finally:
        con.close()


def test_run_extracts_then_builds_only_when_a_build_is_due(configured, capsys):
    """As the schedule and the build sensor: ``extract_job``, then ``build_job`` when due."""
    source, wh = configured
    insert_spend(source, [spend_row(f"r{i}", utcnow() - timedelta(hours=i + 1)) for i in range(4)])
    assert main(["run"]) == 0
    first = capsys.readouterr().out
    assert "spendwh run: building: no warehouse published from a recorded build yet" in first
    assert "ok    fct_spend_daily" in first
    assert f"published {wh / 'warehouse.duckdb'}" in first
    stamp = (wh / "warehouse.duckdb").stat().st_mtime_ns

    assert main(["run"]) == 0
    quiet = capsys.readouterr().out
    assert "spendwh run: nothing new since the warehouse published at" in quiet
    assert "fct_spend_daily" not in quiet  # the build job did not even start
    raw_assets = len(SNAPSHOT_TABLES) + 3
    assert f"summary: {raw_assets} assets materialized, 6 checks passed" in quiet
    assert "nothing new: " in quiet
    assert (wh / "warehouse.duckdb").stat().st_mtime_ns == stamp


def test_run_fails_loudly_and_does_not_publish(configured, capsys):
    source, wh = configured
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('SpendLogs')}")
    assert main(["run", "--extract-only"]) == 1
    captured = capsys.readouterr()
    assert "FAIL  raw/spend_logs:freshness" in captured.out
    assert "FAILED" in captured.err
    assert "failed (raw/spend_logs:freshness, raw/spend_logs:reconciliation)" in captured.out
    assert not (wh / "warehouse.duckdb").exists()


def test_run_without_database_url_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL is not set" in err
    # started outside the project (cron without cd): the message says where it looked
    assert f"here {tmp_path.resolve()}" in err
    assert "start it from the project directory" in err


def test_rollback_run_keeps_the_rollback_config():
    args = argparse.Namespace(rollback=True, extract_only=False)
    config = run_config(args)
    expected = {"config": {"rollback_days": 3, "maintenance": True}}  # with the lake's upkeep
    assert config["ops"]["raw__spend_logs"] == expected
    assert config["loggers"]["console"]["config"]["log_level"] == "CRITICAL"
    assert job_name(args) == "spend_warehouse_rollback_job"
    assert job_name(argparse.Namespace(rollback=False, extract_only=True)) == "extract_job"
    # the scheduled path: extract_job first, build_job after it when a build is due
    assert job_name(argparse.Namespace(rollback=False, extract_only=False)) == "extract_job"
    with pytest.raises(ConfigError, match="cannot be combined"):
        job_name(argparse.Namespace(rollback=True, extract_only=True))
