"""The source schema comes from the upstream migrations, under either prefix and version."""

from __future__ import annotations

import pytest

from dagster_project.lib import migrations

pytestmark = pytest.mark.integration


def _columns(src, table: str) -> set[str]:
    with src.connect() as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
            (src.prefix + table,),
        ).fetchall()
    return {r[0] for r in rows}


def test_latest_schema_has_the_tables_the_pipeline_reads(source):
    cols = _columns(source, "SpendLogs")
    assert {"request_id", "startTime", "spend", "created_at", "organization_id"} <= cols
    for table in [
        "ErrorLogs",
        "BudgetTable",
        "VerificationToken",
        "DeletedVerificationToken",
        "TeamTable",
        "UserTable",
        "EndUserTable",
        "OrganizationTable",
        "TeamMembership",
        "OrganizationMembership",
    ]:
        assert _columns(source, table), f"{source.prefix}{table} missing"


def test_older_schema_stops_before_created_at_and_organization_id(make_source):
    old = make_source(until="20251101000000")
    cols = _columns(old, "SpendLogs")
    assert "request_id" in cols
    assert "created_at" not in cols
    assert "organization_id" not in cols
    assert not _columns(old, "DeletedVerificationToken")


def test_prefix_rewrite_touches_only_table_prefixes():
    sql = 'ALTER TABLE "LiteLLM_SpendLogs" ADD "x" TEXT; -- LiteLLM_ is cool'
    assert migrations.rewrite_prefix(sql, "Dheera AI_") == (
        'ALTER TABLE "Dheera AI_SpendLogs" ADD "x" TEXT; -- LiteLLM_ is cool'
    )


def test_migrations_are_ordered_and_pinned():
    found = migrations.list_migrations()
    stamps = [m.timestamp for m in found]
    assert stamps == sorted(stamps)
    assert migrations.SPEND_LOGS_TIMESTAMPS in stamps
    assert len(migrations.list_migrations(until=migrations.SPEND_LOGS_ORGANIZATION_ID)) < len(found)
