"""Crash safety and bad sources: SIGKILL at every stage, missing tables, a SELECT-only role."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import uuid
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest.extract import extract_snapshots
from dagster_project.lib.ingest.lake import TMP_PREFIX
from dagster_project.lib.ingest.source import SourceSchemaError, SourceSession
from dagster_project.settings import REPO_ROOT
from tests.ingest.extract_once import OBJECT_STORE_ENV
from tests.ingest.helpers import Warehouse, insert_spend, kill_at_pause_point, spend_row, utcnow

# parquet, iceberg on local disk and iceberg on S3 (tests/ingest/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("lake_variant")]


def _many_rows(n: int) -> list[dict]:
    now = utcnow()
    return [
        spend_row(f"req-{i:05d}", now - timedelta(minutes=17 * i), spend=i / 1000) for i in range(n)
    ]


def _run_until_paused(source, wh: Warehouse, stage: str, tmp_path) -> None:
    """Start an extraction into ``wh`` in a subprocess, wait until it blocks at ``stage``, kill."""
    env = dict(os.environ)
    if wh.object_store is not None:  # the lake's object store, credentials included
        env[OBJECT_STORE_ENV] = json.dumps(dataclasses.asdict(wh.object_store))
    command = [sys.executable, "-m", "tests.ingest.extract_once", source.url, source.prefix]
    command += [str(wh.root), wh.lake_format]
    kill_at_pause_point(command, env, REPO_ROOT, stage, tmp_path / f"paused-{stage}")


def as_user(url: str, user: str) -> str:
    """``url`` logging in as ``user`` (no password: the test server trusts local logins)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.mark.parametrize("stage", ["mid_read", "before_publish", "after_publish", "mid_merge"])
def test_sigkill_then_rerun_equals_uninterrupted_run(make_source, tmp_path, stage):
    source = make_source()
    insert_spend(source, _many_rows(2000))
    reference = Warehouse(tmp_path / "reference")
    reference.extract(source)

    crashed = Warehouse(tmp_path / "crashed")
    _run_until_paused(source, crashed, stage, tmp_path)
    manifest = crashed.manifest()
    if stage in {"mid_read", "before_publish"}:  # nothing published: previous (empty) state
        assert manifest.version == 0
        assert "watermark" not in manifest.state
    else:  # published: data and watermark together
        assert manifest.state["watermark"] == reference.manifest().state["watermark"]

    result = crashed.extract(source)
    assert crashed.rows() == reference.rows()
    assert len(crashed.rows()) == 2000
    assert result.watermark_after.isoformat() == reference.manifest().state["watermark"]
    lake = crashed.store.table("spend_logs")
    on_disk = {p.relative_to(lake.dir).as_posix() for p in lake.dir.rglob("*.parquet")}
    assert on_disk == {f.path for f in lake.read_manifest().files}  # orphans removed
    assert not [p for p in lake.dir.rglob(f"{TMP_PREFIX}*")]


def test_missing_optional_table_is_recorded_as_absent(make_source, tmp_path):
    source = make_source()
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('OrganizationMembership')} CASCADE")
    wh = Warehouse(tmp_path / "wh")
    with (
        SourceSession(source.url, source.prefix) as session,
        connect_writer(wh.build) as con,
    ):
        results = extract_snapshots(session, con, wh.store)
    status = {r.source: r.status for r in results}
    assert status["OrganizationMembership"] == "absent"
    assert status["TeamMembership"] == "present"
    assert wh.query(
        "SELECT status FROM raw._source_tables WHERE source_table = 'OrganizationMembership'"
    ) == [("absent",)]
    assert wh.query("SELECT count(*) FROM raw.team_memberships") == [(0,)]


def test_missing_required_table_is_a_clear_error(make_source, tmp_path):
    source = make_source()
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('TeamMembership')} CASCADE")
    wh = Warehouse(tmp_path / "wh")
    with (
        SourceSession(source.url, source.prefix) as session,
        connect_writer(wh.build) as con,
        pytest.raises(SourceSchemaError, match=f"{source.prefix}TeamMembership"),
    ):
        extract_snapshots(session, con, wh.store)


def test_absent_spend_logs_are_recorded_never_as_zero_spend(make_source, tmp_path):
    source = make_source()
    with source.connect() as conn:
        conn.execute(f"DROP TABLE {source.table('SpendLogs')}")
    wh = Warehouse(tmp_path / "wh")
    result = wh.extract(source)
    assert result.status == "absent"
    assert wh.query("SELECT status FROM raw._source_tables WHERE source_table = 'SpendLogs'") == [
        ("absent",)
    ]


def test_select_only_role_can_extract_everything(make_source, pg_server_url, tmp_path):
    source = make_source()
    insert_spend(source, _many_rows(50))
    role = f"spendwh_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with source.connect(autocommit=True) as conn:
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        ro_url = as_user(source.url, role)
        with psycopg.connect(ro_url) as ro, pytest.raises(psycopg.errors.InsufficientPrivilege):
            ro.execute(f"DELETE FROM {source.table('SpendLogs')}")  # truly read-only
        wh = Warehouse(tmp_path / "wh")
        result = wh.extract(source, url=ro_url)
        assert result.rows_in_warehouse == 50
        with (
            SourceSession(ro_url, source.prefix) as session,
            connect_writer(wh.build) as con,
        ):
            results = extract_snapshots(session, con, wh.store)
        assert all(r.status == "present" for r in results)
    finally:
        with source.connect(autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')


def test_audit_log_is_read_incrementally(make_source, tmp_path):
    source = make_source()
    table = source.table("AuditLog")

    def audit(ident: str, at) -> None:
        with source.connect() as conn:
            conn.execute(
                f"INSERT INTO {table} (id, updated_at, action, table_name, object_id, "
                "updated_values) VALUES (%s, %s, 'updated', 'TeamTable', 't1', %s)",
                (ident, at, '{"max_budget": 10}'),
            )

    def snapshot() -> dict:
        with (
            SourceSession(source.url, source.prefix) as session,
            connect_writer(wh.build) as con,
        ):
            return {r.raw_table: r for r in extract_snapshots(session, con, wh.store)}

    wh = Warehouse(tmp_path / "wh")
    now = utcnow()
    first = snapshot()["audit_log"]
    assert (first.rows, first.changed) == (0, True)
    audit("a1", now - timedelta(hours=1))
    assert snapshot()["audit_log"].rows == 1
    audit("a2", now - timedelta(minutes=30))
    second = snapshot()["audit_log"]
    assert (second.rows, second.changed) == (2, True)
    assert not snapshot()["audit_log"].changed  # nothing new: no new file
    lake = wh.store.table("snapshots/audit_log")
    assert sorted(f.rows for f in lake.read_manifest().files) == [0, 1, 1]
    assert wh.query("SELECT id, updated_values FROM raw.audit_log ORDER BY id") == [
        ("a1", '{"max_budget": 10}'),
        ("a2", '{"max_budget": 10}'),
    ]


def test_secrets_are_never_landed_and_json_arrays_become_text(make_source, tmp_path):
    source = make_source()
    with source.connect() as conn:
        conn.execute(
            f"INSERT INTO {source.table('UserTable')} (user_id, password, teams, metadata) "
            "VALUES ('u1', 'hunter2', ARRAY['t1','t2'], '{\"a\": 1}')"
        )
    wh = Warehouse(tmp_path / "wh")
    with (
        SourceSession(source.url, source.prefix) as session,
        connect_writer(wh.build) as con,
    ):
        extract_snapshots(session, con, wh.store)
    columns = {r[0] for r in wh.query("SELECT column_name FROM (DESCRIBE raw.users)")}
    assert "password" not in columns
    assert "litellm_params" not in {
        r[0] for r in wh.query("SELECT column_name FROM (DESCRIBE raw.proxy_models)")
    }
    assert wh.query("SELECT user_id, teams, metadata FROM raw.users") == [
        ("u1", '["t1", "t2"]', '{"a": 1}')
    ]
    parquet = b"".join(p.read_bytes() for p in (wh.lake / "snapshots" / "users").rglob("*.parquet"))
    assert b"hunter2" not in parquet
