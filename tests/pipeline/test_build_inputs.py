"""Nothing new, nothing done: the fingerprint of a build's inputs and when a run may skip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dagster_project.lib.dbt.build_inputs import (
    BuildInputs,
    current_inputs,
    last_published,
    missing_postgres_tables,
    record_built,
    record_published,
    skip_reason,
)
from dagster_project.lib.ingest.lake import Lake, LakeFile
from dagster_project.lib.postgres import create_database, drop_database

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(minutes=20)


def inputs(**changes) -> BuildInputs:
    values = {
        "lake": {"spend_logs": "a", "snapshots/teams": "b"},
        "project": "p",
        "command": ("duckdb", "build"),
    }
    values.update(changes)
    return BuildInputs(**values)


@pytest.mark.parametrize(
    "change",
    [
        {"lake": {"spend_logs": "c", "snapshots/teams": "b"}},
        {"lake": {"spend_logs": "a", "snapshots/teams": "b", "error_logs": "d"}},
        {"project": "q"},
        {"command": ("postgres", "build")},
    ],
)
def test_every_input_changes_the_fingerprint(change):
    assert inputs(**change).fingerprint() != inputs().fingerprint()


def test_the_fingerprint_ignores_order():
    reordered = inputs(lake={"snapshots/teams": "b", "spend_logs": "a"})
    assert reordered.fingerprint() == inputs().fingerprint()


def published(minutes_ago: float, fingerprint: str | None = None) -> dict:
    return {
        "fingerprint": fingerprint or inputs().fingerprint(),
        "run_id": "r1",
        "published_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
    }


def reason(record, fingerprint=None, **kw):
    options = {
        "now": NOW,
        "max_age": MAX_AGE,
        "warehouse_exists": True,
        "models_present": True,
        "open_health_problems": 0,
    }
    options.update(kw)
    return skip_reason(record, fingerprint or inputs().fingerprint(), **options)


def test_unchanged_and_recent_skips_and_says_until_when():
    skip, text = reason(published(10))
    assert skip
    assert "nothing new since the warehouse published at 2026-12-05 11:50:00 UTC" in text
    assert "10 min ago" in text
    assert "by 12:10 UTC at the latest" in text


@pytest.mark.parametrize(
    ("record", "kw", "why"),
    [
        (None, {}, "no warehouse published"),
        (published(10, fingerprint="other"), {}, "new or changed rows"),
        (published(20), {}, "re-evaluated every 20 min"),  # periods and forecasts move
        (published(10), {"warehouse_exists": False}, "warehouse is missing"),  # deleted by hand
        (published(10), {"models_present": False}, "lacks model tables"),  # rebuilt from lake
        (published(10), {"open_health_problems": 1}, "1 pipeline-health problem"),
    ],
    ids=["never", "changed", "too-old", "no-warehouse", "no-models", "health-open"],
)
def test_no_skip(record, kw, why):
    skip, text = reason(record, **kw)
    assert not skip
    assert text.startswith("building: ")
    assert why in text


def test_only_the_run_that_built_promotes_its_fingerprint(tmp_path):
    record_built(tmp_path, "f1", run_id="run-a")
    assert record_published(tmp_path, "run-b", NOW) is None  # built nothing itself
    assert last_published(tmp_path) is None
    assert record_published(tmp_path, "run-a", NOW) == "f1"
    assert last_published(tmp_path) == {
        "fingerprint": "f1",
        "run_id": "run-a",
        "published_at": NOW.isoformat(),
    }


def test_a_garbled_record_means_build(tmp_path):
    (tmp_path / "published_inputs.json").write_text("{not json")
    assert last_published(tmp_path) is None


def test_current_inputs_read_lake_files_and_project(tmp_path):
    lake = Lake(tmp_path / "lake")
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    (project / "models" / "a.sql").write_text("select 1")
    table = lake.table("spend_logs")
    table.publish(state={"watermark": None})
    first = current_inputs(lake, project, ["build"])
    assert set(first.lake) == {"spend_logs"}
    assert first == current_inputs(lake, project, ["build"])
    # a watermark that moves without data (the "settled" state) changes nothing dbt reads
    table.publish(state={"watermark": "2026-12-05T00:00:00", "settled": True})
    assert current_inputs(lake, project, ["build"]) == first
    table.publish(add=[LakeFile("day=2026-12-05/a.parquet", 10, 999, "2026-12-05")])
    stored = current_inputs(lake, project, ["build"])
    assert stored.lake != first.lake
    lake.table("snapshots/teams").publish(state={})
    assert set(current_inputs(lake, project, ["build"]).lake) == {"spend_logs", "snapshots/teams"}
    (project / "models" / "a.sql").write_text("select 2")
    assert current_inputs(lake, project, ["build"]).project != first.project
    assert current_inputs(lake, project, ["build", "--full-refresh"]).command != first.command


@pytest.mark.integration
def test_missing_postgres_tables_follow_dbt_custom_schemas(pg_server_url):
    url = create_database(pg_server_url, f"spendwh_models_{uuid.uuid4().hex[:8]}", drop=True)
    relations = [
        '"build"."main"."fct_spend_daily"',
        '"build"."main_intermediate"."int_budget_periods_bounded"',
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create schema finance")
            conn.execute("create schema finance_intermediate")
            conn.execute("create table finance.fct_spend_daily (x int)")
            assert missing_postgres_tables(url, "finance", relations) == [
                "finance_intermediate.int_budget_periods_bounded"
            ]
            conn.execute("create table finance_intermediate.int_budget_periods_bounded (x int)")
        assert missing_postgres_tables(url, "finance", relations) == []
        assert missing_postgres_tables(url, "other", relations) == [
            "other.fct_spend_daily",
            "other_intermediate.int_budget_periods_bounded",
        ]
    finally:
        drop_database(pg_server_url, url.rsplit("/", 1)[-1])
