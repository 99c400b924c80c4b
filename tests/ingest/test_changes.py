"""Change markers of the source tables (real PostgreSQL) and the records that let a passing
reconciliation stand while neither side changed (lib/ingest/changes.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import psycopg
import pytest

from dagster_project.lib.ingest.changes import (
    COMPARED,
    READ,
    ChangeMarker,
    Unchanged,
    change_marker,
    forget_record,
    reusable_record,
    save_record,
    unchanged_key,
)
from dagster_project.lib.ingest.lake import Manifest
from dagster_project.lib.ingest.source import SourceSession
from tests.ingest.helpers import insert_spend, spend_row, utcnow

# server_version, in_recovery, track_counts, started_at, stats_reset, database, tables, kinds,
# relations, counted: a primary's row for one plain table
PRIMARY = (150020, False, "on", "2026-12-01 00:00:00+00", None, "proxy", "16384:r:16384:5:0:0")
ROW = (*PRIMARY, "r", 1, 1)


def with_tables(tables: str, kinds: str = "r", relations: int = 1, counted: int = 1) -> tuple:
    return (*PRIMARY[:6], tables, kinds, relations, counted)


def test_a_marker_follows_the_write_counts_and_the_server():
    marker = change_marker(ROW)
    assert marker.usable
    assert change_marker(ROW) == marker
    assert change_marker(with_tables("16384:r:16384:6:0:0")) != marker  # one more insert
    assert change_marker(with_tables("16384:r:16390:5:0:0")) != marker  # truncated
    restarted = (*ROW[:3], "2026-12-02 00:00:00+00", *ROW[4:])
    assert change_marker(restarted) != marker
    reset = (*ROW[:4], "2026-12-02 00:00:00+00", *ROW[5:])
    assert change_marker(reset) != marker


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((140000, *ROW[1:]), "before 15"),
        ((ROW[0], True, *ROW[2:]), "standby"),
        ((*ROW[:2], "off", *ROW[3:]), "track_counts"),
        (with_tables(None, None, 0, 0), "absent"),
        (with_tables("1:v:0::", "v"), "view"),
        (with_tables("1:p:0:0:0:0,2:f:0::", "fp", 2, 2), "foreign"),
        (with_tables("1:p:0:0:0:0,2:r:2", "pr", 2, 1), "no statistics"),
    ],
)
def test_a_marker_is_unusable_where_the_counts_miss_writes(row, reason):
    marker = change_marker(row)
    assert not marker.usable
    assert reason in marker.reason


def test_a_key_covers_the_marker_the_lake_and_the_inputs():
    marker = change_marker(ROW)
    manifest = Manifest(version=4, state={"watermark": "2026-12-05T10:00:00"})
    day = date(2026, 12, 3)
    columns = ["request_id text", "spend double precision"]

    def key_of(marker=marker, manifest=manifest, columns=columns, first_day=day, days=3):
        return unchanged_key(marker, manifest, columns=columns, first_day=first_day, days=days)

    key = key_of()
    assert key == key_of()
    assert key != key_of(columns=columns[:1])  # a column dropped
    assert key != key_of(manifest=Manifest(version=5, state=manifest.state))
    assert key != key_of(manifest=Manifest(version=4, state={"watermark": "2026-12-05T10:05:00"}))
    assert key != key_of(first_day=day + timedelta(days=1))
    assert key != key_of(days=4)
    assert key != key_of(marker=change_marker(with_tables("16384:r:16384:6:0:0")))
    assert key_of(marker=ChangeMarker(None, "a standby")) is None


def test_a_record_stands_for_its_key_until_it_is_too_old(tmp_path):
    at = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    unchanged = Unchanged(tmp_path, hour)
    save_record(unchanged, COMPARED, "spend_logs", "k1", at, {"source_rows": 12})

    def record(
        key="k1", now=at + 59 * hour / 60, kind=COMPARED, table="spend_logs", unchanged=unchanged
    ):
        return reusable_record(unchanged, kind, table, key, now=now)

    assert record() == {"key": "k1", "at": at.isoformat(), "metadata": {"source_rows": 12}}
    assert record(key="k2") is None
    assert record(now=at + hour) is None
    assert record(now=at - hour) is None
    assert record(key=None) is None
    assert record(unchanged=Unchanged(tmp_path, 0 * hour)) is None
    assert record(table="error_logs") is None
    assert record(kind=READ) is None
    forget_record(unchanged, COMPARED, "spend_logs")
    assert record() is None


def test_a_garbled_record_costs_one_more_piece_of_work(tmp_path):
    at = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    unchanged = Unchanged(tmp_path, timedelta(hours=1))
    save_record(unchanged, READ, "spend_logs", "k1", at, {})
    path = tmp_path / READ / "spend_logs.json"
    assert path.exists()
    path.write_text('{"key": "k1", "at": "yesterday"')
    assert reusable_record(unchanged, READ, "spend_logs", "k1", now=at) is None


# ---------------------------------------------------------------------------------------------
# Real PostgreSQL
# ---------------------------------------------------------------------------------------------


def read_marker(url: str, prefix: str, name: str = "SpendLogs") -> ChangeMarker:
    with SourceSession(url, prefix, watch=[name]) as session:
        return session.markers[name]


def write(source, sql: str) -> None:
    """One write in a session of its own, whose statistics are flushed before it returns."""
    with psycopg.connect(source.url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.mark.integration
def test_every_kind_of_write_moves_the_marker_and_reads_do_not(make_source):
    source = make_source()
    table = source.table("SpendLogs")
    insert_spend(source, [spend_row("r1", utcnow()), spend_row("r2", utcnow())])
    before = read_marker(source.url, source.prefix)
    assert before.usable, before.reason
    write(source, f"SELECT count(*) FROM {table}")
    assert read_marker(source.url, source.prefix) == before

    markers = [before]
    for sql in (
        f'INSERT INTO {table} (request_id, call_type, spend, "startTime", "endTime") '
        "VALUES ('r3', 'acompletion', 0.5, now(), now())",
        f"UPDATE {table} SET spend = 2.0 WHERE request_id = 'r1'",
        f"DELETE FROM {table} WHERE request_id = 'r2'",
        f"TRUNCATE {table}",
    ):
        write(source, sql)
        markers.append(read_marker(source.url, source.prefix))
        assert markers[-1].usable
        assert markers[-1] != markers[-2], sql
    assert len(set(markers)) == len(markers)


@pytest.mark.integration
def test_a_write_to_any_partition_moves_the_marker(make_source):
    source = make_source()
    parted = source.table("Parted")
    write(source, f'CREATE TABLE {parted} (id int, "startTime" timestamp) PARTITION BY RANGE (id)')
    for low, high in ((0, 10), (10, 20)):
        part = source.table(f"Parted_{low}")
        write(
            source, f"CREATE TABLE {part} PARTITION OF {parted} FOR VALUES FROM ({low}) TO ({high})"
        )
    before = read_marker(source.url, source.prefix, "Parted")
    assert before.usable, before.reason
    write(source, f"INSERT INTO {parted} VALUES (15, now())")
    assert read_marker(source.url, source.prefix, "Parted") != before


@pytest.mark.integration
def test_without_track_counts_or_a_table_there_is_no_marker(make_source):
    source = make_source()
    options = quote("-c track_counts=off")
    joiner = "&" if "?" in source.url else "?"
    untracked = read_marker(f"{source.url}{joiner}options={options}", source.prefix)
    assert not untracked.usable
    assert "track_counts" in untracked.reason
    absent = read_marker(source.url, source.prefix, "NoSuchTable")
    assert not absent.usable
    assert "absent" in absent.reason
