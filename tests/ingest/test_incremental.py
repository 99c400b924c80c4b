"""Incremental extraction against a real PostgreSQL, real Parquet and a real DuckDB.

Scenarios from ``shared/reference/reliability.md`` §5: late rows inside the window, ties at the
watermark, duplicates, no-op runs, older schemas without ``created_at``, both prefixes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pytest

from dagster_project.lib.ingest.windows import WindowOptions
from tests.duckdb_files import corrupt_block, metadata_block
from tests.ingest.helpers import Warehouse, insert_spend, ms, spend_row, utcnow

# parquet, iceberg on local disk and iceberg on S3 (tests/ingest/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("lake_variant")]

OLD_SCHEMA = "20251101000000"  # before created_at, organization_id and newer columns


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


def test_lands_rows_with_both_prefixes_and_reruns_are_noops(source, wh):
    now = ms(utcnow())
    insert_spend(
        source,
        [
            spend_row(
                f"r{i}",
                now - timedelta(hours=i * 7),
                spend=0.5 * i,
                metadata={
                    "user_api_key_alias": f"alias-{i}",
                    "user_api_key_team_alias": "team-a",
                    "model_map_information": {"model_map_key": "x" * 500},
                    "error_information": {"error_class": "RateLimitError", "error_code": "429"},
                    **({"user_api_key_project_id": f"proj-{i}"} if i % 2 == 0 else {}),
                },
                messages=json.dumps({"secret": "prompt"}),
            )
            for i in range(20)
        ],
    )
    first = wh.extract(source)
    assert (first.rows_read, first.rows_stored, first.rows_in_warehouse) == (20, 20, 20)
    assert first.cursor == "created_at"
    rows = wh.query(
        "SELECT request_id, spend, meta_key_alias, meta_team_alias, meta_error_class, "
        "meta_error_code, metadata, messages, start_time FROM raw.spend_logs "
        "WHERE request_id = 'r3'"
    )
    rid, spend, alias, team_alias, err_class, err_code, metadata, messages, _ = rows[0]
    assert (rid, spend, alias, team_alias, err_class, err_code) == (
        "r3",
        1.5,
        "alias-3",
        "team-a",
        "RateLimitError",
        "429",
    )
    assert "model_map_information" not in json.loads(metadata)
    projects = dict(wh.query("SELECT request_id, meta_project_id FROM raw.spend_logs"))
    assert (projects["r3"], projects["r4"]) == ("", "proj-4")  # '' when absent, never null
    assert messages is None  # payload columns are opt-in
    # hive partitions by UTC day of startTime, listed in the manifest
    manifest = wh.manifest()
    days = {f.partition for f in manifest.files}
    assert days == {(now - timedelta(hours=i * 7)).date().isoformat() for i in range(20)}
    assert all(f.path.startswith(f"day={f.partition}/") for f in manifest.files)

    before = wh.rows()
    second = wh.extract(source)  # nothing new: a no-op
    assert second.rows_stored == 0
    assert second.files_written == 0
    assert second.watermark_after == first.watermark_after
    assert wh.manifest().version == manifest.version  # not even a new manifest
    assert wh.rows() == before


def test_empty_source_is_a_noop(source, wh):
    result = wh.extract(source)
    assert (result.rows_read, result.rows_stored) == (0, 0)
    assert result.watermark_after is None
    assert wh.manifest().version == 0
    assert wh.query("SELECT count(*) FROM raw.spend_logs") == [(0,)]
    assert wh.query("SELECT status FROM raw._source_tables WHERE source_table = 'SpendLogs'") == [
        ("present",)
    ]


def test_late_row_inside_overlap_is_not_lost(make_source, wh):
    source = make_source()
    now = ms(utcnow())
    insert_spend(source, [spend_row("early", now - timedelta(minutes=30))])
    first = wh.extract(source)
    wm = first.watermark_after
    # committed after run N, with a days-old startTime and created_at just below the watermark
    late = spend_row(
        "late", now - timedelta(days=2), created_at=wm - timedelta(minutes=2), updated_at=wm
    )
    insert_spend(source, [late])
    second = wh.extract(source)
    assert second.rows_stored == 1
    assert [r[0] for r in wh.rows()] == ["early", "late"]
    assert second.watermark_after == wm  # the maximum, never moved backwards


def test_ties_at_the_watermark_are_read_again(make_source, wh):
    source = make_source()
    stamp = ms(utcnow() - timedelta(minutes=1))
    insert_spend(source, [spend_row("a", stamp, created_at=stamp, updated_at=stamp)])
    wh.extract(source)
    assert datetime.fromisoformat(wh.manifest().state["watermark"]) == stamp
    # same created_at as the watermark, committed after the run
    insert_spend(source, [spend_row("b", stamp, created_at=stamp, updated_at=stamp)])
    result = wh.extract(source)
    assert result.rows_stored == 1
    assert [r[0] for r in wh.rows()] == ["a", "b"]


def test_updated_row_replaces_the_stored_copy_in_the_lake_too(make_source, wh):
    source = make_source()
    now = ms(utcnow())
    day = now - timedelta(hours=1)
    insert_spend(source, [spend_row("x", day, spend=1.0), spend_row("y", day, spend=5.0)])
    wh.extract(source)
    with source.connect() as conn:  # the row changes while inside the overlap
        conn.execute(
            f"UPDATE {source.table('SpendLogs')} SET spend = 2.0, "
            "updated_at = updated_at + interval '1 second' WHERE request_id = 'x'"
        )
    result = wh.extract(source)
    assert result.rows_stored == 1
    assert wh.query("SELECT request_id, spend FROM raw.spend_logs ORDER BY 1") == [
        ("x", 2.0),
        ("y", 5.0),
    ]
    # the lake never holds two versions of a request: the day was rewritten with the winner
    lake = "SELECT request_id, spend FROM lake ORDER BY 1"
    assert wh.lake_rows(lake) == [("x", 2.0), ("y", 5.0)]
    assert sum(f.rows for f in wh.manifest().files) == 2
    table = wh.store.table("spend_logs")
    live = {table.absolute(f) for f in wh.manifest().files}
    assert set((wh.lake / "spend_logs").rglob("*.parquet")) == live  # replaced files deleted
    # a rebuild from the lake picks the same rows
    wh.build.unlink()
    wh.extract(source)
    assert wh.query("SELECT request_id, spend FROM raw.spend_logs ORDER BY 1") == [
        ("x", 2.0),
        ("y", 5.0),
    ]


def test_a_row_moved_to_another_day_leaves_its_old_day(make_source, wh):
    source = make_source()
    now = ms(utcnow())
    insert_spend(source, [spend_row("x", now - timedelta(days=3), spend=1.0)])
    wh.extract(source)
    with source.connect() as conn:  # the proxy rewrites the row with a new startTime
        table = source.table("SpendLogs")
        conn.execute(
            f'UPDATE {table} SET "startTime" = %s, "endTime" = %s, '
            "updated_at = updated_at + interval '1 second' WHERE request_id = 'x'",
            [now - timedelta(hours=2), now - timedelta(hours=2)],
        )
    wh.extract(source)
    lake = "SELECT request_id, CAST(start_time AS DATE) FROM lake"
    assert wh.lake_rows(lake) == [("x", (now - timedelta(hours=2)).date())]
    assert len(wh.manifest().files) == 1  # the old day's file is no longer live


def test_a_rollback_replaces_a_row_changed_after_the_overlap(make_source, wh):
    source = make_source()
    old = ms(utcnow()) - timedelta(hours=3)  # settled: no later run's overlap reads it again
    insert_spend(source, [spend_row("x", old, spend=1.0, created_at=old, updated_at=old)])
    wh.extract(source)
    with source.connect() as conn:
        conn.execute(
            f"UPDATE {source.table('SpendLogs')} SET spend = 2.0, updated_at = %s "
            "WHERE request_id = 'x'",
            [old + timedelta(seconds=1)],
        )
    assert wh.extract(source).rows_stored == 0  # the incremental window does not see it
    assert wh.extract(source, rollback_days=1).rows_stored == 1
    assert wh.lake_rows("SELECT request_id, spend FROM lake") == [("x", 2.0)]
    assert wh.query("SELECT request_id, spend FROM raw.spend_logs") == [("x", 2.0)]


def test_older_schema_uses_start_time_with_lookback(make_source, wh):
    source = make_source(until=OLD_SCHEMA)
    now = ms(utcnow())
    insert_spend(source, [spend_row(f"r{i}", now - timedelta(minutes=10 * i)) for i in range(1, 6)])
    options = WindowOptions(lookback=timedelta(minutes=60))
    first = wh.extract(source, options=options)
    assert first.cursor == "startTime"
    assert first.watermark_after == now - timedelta(minutes=10)
    # missing newer columns land as NULL
    assert wh.query("SELECT DISTINCT organization_id, created_at FROM raw.spend_logs") == [
        (None, None)
    ]
    # a late row inside the look-back (startTime = watermark - L/2) is picked up
    late = spend_row("late", first.watermark_after - timedelta(minutes=30))
    insert_spend(source, [late])
    second = wh.extract(source, options=options)
    assert second.rows_stored == 1
    assert len(wh.rows()) == 6
    third = wh.extract(source, options=options)
    assert third.rows_stored == 0
    assert third.watermark_after == first.watermark_after


def test_backlog_is_committed_in_chunks_identically(make_source, tmp_path):
    source = make_source()
    now = ms(utcnow())
    rows = [
        spend_row(
            f"r{i:03d}",
            now - timedelta(hours=i),
            created_at=now - timedelta(hours=i),
            updated_at=now - timedelta(hours=i),
        )
        for i in range(60)
    ]
    insert_spend(source, rows)
    chunked, whole = Warehouse(tmp_path / "a"), Warehouse(tmp_path / "b")
    result = chunked.extract(source, options=WindowOptions(chunk_rows=10))
    assert result.chunks == 6
    whole.extract(source)
    assert chunked.rows() == whole.rows()
    assert len(chunked.rows()) == 60


def test_payload_columns_only_when_opted_in(make_source, wh):
    source = make_source()
    insert_spend(
        source,
        [spend_row("p", utcnow(), response=json.dumps({"text": "hi"}))],
    )
    wh.extract(source, include_payload=True)
    assert wh.query("SELECT response FROM raw.spend_logs") == [('{"text": "hi"}',)]


def test_new_source_column_is_recorded_as_drift(make_source, wh):
    source = make_source()
    with source.connect() as conn:
        conn.execute(f"ALTER TABLE {source.table('SpendLogs')} ADD COLUMN flat_cost float8")
    insert_spend(source, [spend_row("d", utcnow(), flat_cost=1.0)])
    result = wh.extract(source)
    assert result.drift == ["flat_cost"]
    assert result.rows_in_warehouse == 1


def test_corrupt_build_database_is_rebuilt_identically(make_source, wh):
    source = make_source()
    insert_spend(source, [spend_row(f"r{i}", utcnow() - timedelta(hours=i)) for i in range(30)])
    wh.extract(source)
    before = wh.rows()
    corrupt_block(wh.build, metadata_block(wh.build))  # fails its checksum when opened
    with pytest.raises(duckdb.Error, match=r"Corrupt database file.*checksum"):
        wh.rows()
    wh.extract(source)
    assert wh.rows() == before
    assert list(wh.build.parent.glob("build.duckdb.corrupt-*"))


def test_compaction_keeps_content(make_source, wh, monkeypatch):
    from dagster_project.lib.ingest import extract as ingest

    monkeypatch.setattr(ingest, "COMPACT_MIN_FILES", 3)
    source = make_source()
    start = utcnow().replace(hour=0, minute=30)
    for i in range(3):  # three runs, each adding a file to the same day
        insert_spend(source, [spend_row(f"r{i}", start + timedelta(minutes=i))])
        result = wh.extract(source)
    assert result.compacted_partitions == 1
    assert len(wh.manifest().files) == 1
    assert [r[0] for r in wh.rows()] == ["r0", "r1", "r2"]
    files = list((wh.lake / "spend_logs").rglob("*.parquet"))
    assert len(files) == 1  # replaced files are deleted


def test_the_daily_maintenance_leaves_one_file_per_day_and_expires_snapshots(
    make_source, wh, lake_variant
):
    from dagster_project.lib.ingest.iceberg import KEEP_SNAPSHOTS

    source = make_source()
    start = utcnow().replace(hour=0, minute=30)
    runs = KEEP_SNAPSHOTS + 1  # below COMPACT_MIN_FILES (12) files per day
    for i in range(runs):  # one file per run in each of two days: fewer than compaction needs
        insert_spend(
            source,
            [
                spend_row(f"r{i}", start + timedelta(minutes=i)),
                spend_row(f"s{i}", start - timedelta(days=1, minutes=-i)),
            ],
        )
        assert wh.extract(source).compacted_partitions == 0
    assert len(wh.manifest().files) == 2 * runs
    before = wh.rows()

    result = wh.extract(source, maintenance=True)
    assert result.compacted_partitions == 2
    assert sorted(f.partition for f in wh.manifest().files) == sorted(
        {start.date().isoformat(), (start - timedelta(days=1)).date().isoformat()}
    )
    assert wh.rows() == before
    assert wh.lake_rows("SELECT count(*), count(DISTINCT request_id) FROM lake") == [
        (2 * runs, 2 * runs)
    ]
    if lake_variant == "parquet":
        assert result.expired_snapshots == 0  # the manifest keeps no history
    else:
        table = wh.store.table("spend_logs").load()
        assert result.expired_snapshots > 0
        assert len(table.metadata.snapshots) == KEEP_SNAPSHOTS
