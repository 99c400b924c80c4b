"""Unit tests of the pure parts: SQL building, windows, chunk plans, lake files, merges."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_project.lib.duckdb import scratch
from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest import load as raw_load
from dagster_project.lib.ingest.lake import (
    ROW_GROUP_ROWS,
    TMP_PREFIX,
    DayPartitionWriter,
    Lake,
    LakeTable,
    compact,
    write_single_file,
)
from dagster_project.lib.ingest.reconcile import (
    DayStat,
    compare_days,
    history_slice,
    reconcile_scope,
)
from dagster_project.lib.ingest.source import (
    SPEND_LOGS,
    SourceColumn,
    SourceSchemaError,
    drift,
    fact_select_list,
    is_transient,
    missing_required,
    prefetch,
)
from dagster_project.lib.ingest.windows import (
    Bucket,
    WindowOptions,
    incremental_window,
    plan_chunks,
    rollback_window,
    window_floor,
)
from dagster_project.lib.sql import sql_timestamp

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000)


def cols(*names: str, json_cols: tuple[str, ...] = ("metadata",)) -> dict[str, SourceColumn]:
    return {n: SourceColumn(n, "jsonb" if n in json_cols else "text") for n in names}


# --- SQL -------------------------------------------------------------------------------------


def test_timestamps_round_trip_exact_microseconds():
    assert sql_timestamp(T0) == "TIMESTAMP '2026-03-01 12:00:00.123000'"
    with pytest.raises(ValueError, match="naive UTC"):
        sql_timestamp(T0.astimezone())


def test_created_at_window_has_overlap_and_start_time_horizon():
    opts = WindowOptions(overlap=timedelta(minutes=5), horizon=timedelta(days=7))
    where = incremental_window("created_at", T0, T0 + timedelta(hours=1), opts).where()
    assert "\"created_at\" >= TIMESTAMP '2026-03-01 11:55:00.123000'" in where
    assert "\"startTime\" >= TIMESTAMP '2026-02-22 12:00:00.123000'" in where
    assert "\"created_at\" < TIMESTAMP '2026-03-01 13:00:00.123000'" in where


def test_start_time_window_uses_lookback_and_first_run_reads_everything():
    opts = WindowOptions(lookback=timedelta(hours=2))
    where = incremental_window("startTime", T0, T0 + timedelta(hours=1), opts).where()
    assert where == (
        "\"startTime\" < TIMESTAMP '2026-03-01 13:00:00.123000' AND "
        "\"startTime\" >= TIMESTAMP '2026-03-01 10:00:00.123000'"
    )
    assert incremental_window("startTime", None, T0, opts).where() == (
        "\"startTime\" < TIMESTAMP '2026-03-01 12:00:00.123000'"
    )


def test_rollback_window_starts_at_utc_midnight():
    where = rollback_window("created_at", T0, 3).where()
    assert "\"startTime\" >= TIMESTAMP '2026-02-27 00:00:00.000000'" in where


def test_rollback_window_adds_the_older_days_to_repair_as_ranges():
    repair = [date(2026, 1, 10), date(2026, 1, 11), date(2026, 1, 20), date(2026, 2, 28)]
    where = rollback_window("created_at", T0, 3, repair).where()
    assert where.endswith(
        "(\"startTime\" >= TIMESTAMP '2026-02-27 00:00:00.000000' OR "
        "(\"startTime\" >= TIMESTAMP '2026-01-10 00:00:00.000000' AND "
        "\"startTime\" < TIMESTAMP '2026-01-12 00:00:00.000000') OR "
        "(\"startTime\" >= TIMESTAMP '2026-01-20 00:00:00.000000' AND "
        "\"startTime\" < TIMESTAMP '2026-01-21 00:00:00.000000'))"
    )  # 2026-02-28 is inside the last three days already


def test_created_at_window_without_a_bound_when_an_index_leads_with_created_at():
    opts = WindowOptions(overlap=timedelta(minutes=5), horizon=timedelta(days=7))
    where = incremental_window("created_at", T0, T0 + timedelta(hours=1), opts, bounded=False)
    assert "startTime" not in where.where()
    assert window_floor("created_at", T0, opts, bounded=False) is None
    assert window_floor("created_at", T0, opts, bounded=True) == T0 - timedelta(days=7)
    assert window_floor("startTime", T0, WindowOptions(), bounded=True) == T0 - timedelta(hours=2)


def test_settled_rows_at_the_watermark_are_not_read_again():
    opts = WindowOptions(overlap=timedelta(minutes=5))
    cap = T0 + timedelta(hours=1)
    settled = incremental_window("created_at", T0, cap, opts, settled=T0 + timedelta(seconds=1))
    assert "\"created_at\" > TIMESTAMP '2026-03-01 12:00:00.123000'" in settled.where()
    # the previous run read within the overlap of the watermark: re-read the overlap
    busy = incremental_window("created_at", T0, cap, opts, settled=T0 - timedelta(minutes=1))
    assert "\"created_at\" >= TIMESTAMP '2026-03-01 11:55:00.123000'" in busy.where()


def test_select_list_quotes_names_and_fills_missing_columns():
    old = cols("request_id", "call_type", "spend", "startTime", "endTime", "user", "metadata")
    exprs = fact_select_list(SPEND_LOGS, old, include_payload=False)
    assert '"startTime" AS "start_time"' in exprs
    assert '"user" AS "user_id"' in exprs
    assert 'NULL::timestamp(3) AS "created_at"' in exprs
    assert 'NULL::text AS "organization_id"' in exprs
    metadata = next(e for e in exprs if e.endswith('AS "metadata"'))
    assert "- 'model_map_information'" in metadata
    alias = next(e for e in exprs if e.endswith('AS "meta_key_alias"'))
    assert "'{user_api_key_alias}'" in alias
    assert len(exprs) == len(rc.content_columns(rc.SPEND_LOG_COLUMNS))


def test_payload_columns_are_opt_in():
    source = cols("request_id", "startTime", "messages", json_cols=("messages",))
    assert 'NULL::text AS "messages"' in fact_select_list(SPEND_LOGS, source, False)
    assert '"messages"::text AS "messages"' in fact_select_list(SPEND_LOGS, source, True)


def test_drift_and_missing_required_columns():
    source = cols("request_id", "startTime", "flat_cost", "spend")
    assert drift(SPEND_LOGS, source) == ["flat_cost"]
    assert missing_required(SPEND_LOGS, cols("request_id")) == ["startTime"]


class _SqlError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.OperationalError("connection reset"), True),
        (_SqlError("08006"), True),  # connection failure
        (_SqlError("40001"), True),  # serialization failure
        (_SqlError("42703"), False),  # undefined column
        (_SqlError("42P01"), False),  # undefined table
        (SourceSchemaError("missing"), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_errors_are_told_from_terminal_ones(exc, transient):
    assert is_transient(exc) is transient


# --- chunk plans -------------------------------------------------------------------------------


def test_chunks_group_hours_up_to_the_row_limit():
    hours = [
        Bucket(T0 + timedelta(hours=h), 40, T0 + timedelta(hours=h, minutes=59)) for h in range(5)
    ]
    cap = T0 + timedelta(hours=6)
    chunks = plan_chunks(hours, cap, max_rows=100)
    assert [c.rows for c in chunks] == [80, 80, 40]
    assert chunks[0].lower is None
    assert chunks[1].lower == chunks[0].upper == T0 + timedelta(hours=2)
    assert chunks[-1].upper == cap
    assert chunks[-1].max_cursor == T0 + timedelta(hours=4, minutes=59)


def test_a_bucket_bigger_than_the_limit_is_one_chunk_and_empty_means_none():
    big = [Bucket(T0, 500, T0)]
    assert [c.rows for c in plan_chunks(big, T0 + timedelta(hours=1), 100)] == [500]
    assert plan_chunks([], T0, 100) == []


def test_prefetch_preserves_order_and_reraises_reader_errors():
    batches = [pa.record_batch({"x": [i]}) for i in range(10)]
    assert [b.column(0)[0].as_py() for b in prefetch(iter(batches))] == list(range(10))

    def failing():
        yield batches[0]
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        list(prefetch(failing()))


# --- lake ------------------------------------------------------------------------------------


def _spend_batch(ids: list[str], starts: list[datetime], spend: list[float]) -> pa.RecordBatch:
    schema = SPEND_LOGS.schema
    data = {f.name: pa.nulls(len(ids), f.type) for f in schema}
    data["request_id"] = pa.array(ids)
    data["start_time"] = pa.array(starts, rc.TS)
    data["end_time"] = pa.array(starts, rc.TS)
    data["spend"] = pa.array(spend)
    data["_extracted_at"] = pa.array([T0] * len(ids), rc.TS)
    data["_batch_id"] = pa.array(["b"] * len(ids))
    return pa.RecordBatch.from_arrays([data[f.name] for f in schema], schema=schema)


def test_day_writer_splits_by_utc_day_and_publish_is_the_commit(tmp_path, lake_format):
    lake = Lake(tmp_path, lake_format).table("spend_logs", day_column="start_time")
    writer = DayPartitionWriter(lake, SPEND_LOGS.schema, "start_time", max_open=1)
    d1, d2 = datetime(2026, 3, 1, 23, 59), datetime(2026, 3, 2, 0, 1)
    writer.write(_spend_batch(["a", "b"], [d1, d2], [1.0, 2.0]))
    writer.write(_spend_batch(["c"], [d1], [3.0]))  # reopens day 1 (max_open=1)
    files = writer.finish()
    assert sorted((f.partition, f.rows) for f in files) == [
        ("2026-03-01", 1),
        ("2026-03-01", 1),
        ("2026-03-02", 1),
    ]
    assert lake.read_manifest().files == ()  # durable but invisible until published
    lake.publish(add=files, state={"watermark": "x"})
    manifest = lake.read_manifest()
    assert manifest.version == 1
    assert manifest.state == {"watermark": "x"}
    assert manifest.rows == 3


def test_orphans_and_temp_files_are_cleaned(tmp_path, lake_format):
    lake = Lake(tmp_path, lake_format).table("spend_logs")
    live = write_single_file(lake, pa.table({"x": [1]}), partition="2026-03-01")
    lake.publish(add=[live])
    orphan = write_single_file(lake, pa.table({"x": [2]}), partition="2026-03-01")
    temp = lake.dir / "day=2026-03-01" / f"{TMP_PREFIX}abc.parquet"
    temp.write_bytes(b"partial")
    removed = lake.clean_orphans()
    assert sorted(removed) == sorted([lake.absolute(orphan), temp])
    assert lake.absolute(live).exists()


def test_aborted_writer_leaves_nothing(tmp_path, lake_format):
    lake = Lake(tmp_path, lake_format).table("spend_logs")
    writer = DayPartitionWriter(lake, SPEND_LOGS.schema, "start_time")
    writer.write(_spend_batch(["a"], [T0], [1.0]))
    writer.abort()
    assert list(lake.dir.rglob("*.parquet")) == []


@pytest.mark.integration
def test_compaction_dedups_with_the_deterministic_winner(tmp_path, lake_format):
    lake = Lake(tmp_path, lake_format).table("spend_logs", day_column="start_time")
    rule = raw_load.dedup_rule(SPEND_LOGS)
    for spend, end in [(1.0, T0), (2.0, T0 + timedelta(seconds=1)), (3.0, T0)]:
        batch = _spend_batch(["a"], [T0], [spend]).set_column(
            rc.content_columns(SPEND_LOGS.columns).index("end_time"),
            "end_time",
            pa.array([end], rc.TS),
        )
        lake.publish(add=[write_single_file(lake, pa.Table.from_batches([batch]), "2026-03-01")])
    result = compact(lake, SPEND_LOGS.schema, rule, min_files=3)
    assert (result.files_before, result.rows_after) == (3, 1)
    (file,) = lake.read_manifest().files
    assert pq.read_table(lake.absolute(file)).column("spend").to_pylist() == [2.0]  # latest end


@pytest.mark.integration
def test_compaction_streams_the_day_in_row_groups(tmp_path, lake_format):
    """A compacted day is written batch by batch (never held whole), each key once, with the
    bounds of all its rows."""
    lake = Lake(tmp_path, lake_format).table("spend_logs", day_column="start_time")
    rule = raw_load.dedup_rule(SPEND_LOGS)
    per_file = ROW_GROUP_ROWS
    for number in range(3):  # the third file repeats the first file's keys
        ids = [f"r{(number % 2) * per_file + i}" for i in range(per_file)]
        starts = [T0 + timedelta(seconds=i + number) for i in range(per_file)]
        batch = _spend_batch(ids, starts, [1.0] * per_file)
        lake.publish(add=[write_single_file(lake, pa.Table.from_batches([batch]), "2026-03-01")])
    result = compact(lake, SPEND_LOGS.schema, rule, min_files=3, bounded=["start_time"])
    assert (result.files_before, result.rows_before, result.rows_after) == (
        3,
        3 * per_file,
        2 * per_file,
    )
    (file,) = lake.read_manifest().files
    parquet = pq.ParquetFile(lake.absolute(file))
    groups = [
        parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)
    ]
    assert len(groups) > 1  # a row group per streamed batch
    assert max(groups) <= ROW_GROUP_ROWS
    data = parquet.read()
    assert len(set(data.column("request_id").to_pylist())) == 2 * per_file
    starts = data.column("start_time").to_pylist()
    bounds = {column: (lo, hi) for column, lo, hi in file.bounds}
    assert bounds["start_time"] == (min(starts), max(starts))
    assert max(starts) == T0 + timedelta(seconds=per_file + 1)  # r0.. from the third file


def test_scratch_duckdb_is_bounded_and_spills_into_a_directory_it_removes():
    with scratch() as con:
        limit, spill = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchall()[0]
        assert limit == "122.0 MiB"  # 128 MB
        assert Path(spill).is_dir()
        # a sort of more than the limit holds spills instead of failing
        rows = con.execute(
            "SELECT count(*) FROM (SELECT i, repeat('x', 100) AS pad FROM range(3000000) t(i) "
            "ORDER BY pad, i DESC)"
        ).fetchall()
        assert rows == [(3_000_000,)]
    assert not Path(spill).exists()


@pytest.mark.integration
def test_merge_winner_does_not_depend_on_load_order(tmp_path, lake_format):
    versions = [_spend_batch(["a", "b"], [T0, T0], [s, 1.0]) for s in (5.0, 7.0)]
    results = []
    for order in (versions, versions[::-1]):
        lake = Lake(tmp_path / str(len(results)), lake_format).table("spend_logs")
        con = duckdb.connect()
        raw_load.ensure_fact_table(con, SPEND_LOGS)
        for batch in order:
            file = write_single_file(lake, pa.Table.from_batches([batch]), "2026-03-01")
            lake.publish(add=[file])
            raw_load.merge_files(con, SPEND_LOGS, lake, [file])
        results.append(
            con.execute("SELECT request_id, spend FROM raw.spend_logs ORDER BY 1").fetchall()
        )
        con.close()
    assert results[0] == results[1]
    assert len(results[0]) == 2


# --- reconciliation ----------------------------------------------------------------------------


def test_compare_days_names_the_differing_days_only():
    source = {date(2026, 3, 1): DayStat(3, 1.5, "x"), date(2026, 3, 2): DayStat(2, 1.0, "y")}
    lake = {date(2026, 3, 1): DayStat(3, 1.5 + 1e-12, "x"), date(2026, 3, 2): DayStat(1, 0.5, "z")}
    (mismatch,) = compare_days(source, lake)
    assert mismatch.day == date(2026, 3, 2)
    assert "2026-03-02: source 2 rows" in mismatch.describe()


def test_a_long_history_is_compared_one_slice_per_run_covering_every_day():
    oldest, before = date(2026, 1, 1), date(2026, 3, 2)  # 60 days
    assert history_slice(oldest, before, 900_000, turn=7) == (oldest, before)  # small: all
    slices = [history_slice(oldest, before, 10_000_000, turn=t) for t in range(10)]
    assert len(set(slices)) == 10
    covered = {f + timedelta(days=d) for f, end in slices for d in range((end - f).days)}
    assert covered == {oldest + timedelta(days=d) for d in range(60)}
    assert all((end - first).days == 6 for first, end in slices)
    assert history_slice(oldest, before, 10_000_000, turn=13) == slices[3]  # in turn, forever
    # 7 days in 6 slices are 4 slices of 2 days, the last one stopping at ``before``
    week = [history_slice(oldest, date(2026, 1, 8), 6_000_000, turn=t) for t in range(8)]
    assert week[:4] == [
        (oldest + timedelta(days=2 * i), min(date(2026, 1, 8), oldest + timedelta(days=2 * i + 2)))
        for i in range(4)
    ]
    assert week[4:] == week[:4]
    # never more slices than days
    assert history_slice(oldest, date(2026, 1, 3), 10**9, turn=1) == (
        date(2026, 1, 2),
        date(2026, 1, 3),
    )


def test_reconcile_scope_stops_at_watermark_minus_margin():
    state = {"watermark": T0.isoformat(), "cursor": "created_at", "margin_s": 300.0}
    scope = reconcile_scope(state, 3, date(2026, 3, 1))
    assert scope.first_day == date(2026, 2, 27)
    assert scope.limit == T0 - timedelta(minutes=5)
    assert reconcile_scope({}, 3, date(2026, 3, 1)) is None


def test_manifest_is_json_with_files_and_state(tmp_path):
    lake = LakeTable(tmp_path, "t")
    lake.publish(add=[write_single_file(lake, pa.table({"x": [1]}))], state={"watermark": "w"})
    data = json.loads(lake.manifest_path.read_text())
    assert data["state"] == {"watermark": "w"}
    assert len(data["files"]) == 1


def test_terminal_errors_become_non_retryable_failures():
    import dagster as dg

    from dagster_project.defs.ingest.assets import classified_errors

    with pytest.raises(dg.Failure) as failure, classified_errors():
        raise SourceSchemaError("'Dheera AI_SpendLogs' lacks required column(s) startTime")
    assert failure.value.allow_retries is False
    with pytest.raises(psycopg.OperationalError), classified_errors():  # left to RetryPolicy
        raise psycopg.OperationalError("server closed the connection unexpectedly")


def test_lake_counts_single_file_days_from_the_manifest_and_dedups_the_others(
    tmp_path, lake_format
):
    from dagster_project.lib.ingest.lake import conform_table
    from dagster_project.lib.ingest.reconcile import DayFilter, lake_stats

    lake = Lake(tmp_path, lake_format).table("spend_logs", day_column="start_time")

    def part(ids: list[str], day: str, spend: float) -> None:
        start = datetime.fromisoformat(f"{day} 10:00:00")
        data = pa.table(
            {"request_id": ids, "start_time": [start] * len(ids), "spend": [spend] * len(ids)}
        )
        file = write_single_file(lake, conform_table(data, SPEND_LOGS.schema), partition=day)
        lake.publish(add=[file])

    part(["a", "b", "c"], "2026-03-01", 1.0)  # one file: counted from the manifest
    part(["d", "e"], "2026-03-02", 1.0)
    part(["e", "f"], "2026-03-02", 2.0)  # a second copy of e: read and deduplicated
    counted = lake_stats(lake, SPEND_LOGS, DayFilter(), full=False)
    read = lake_stats(  # a cursor filter that keeps every row forces reading every file
        lake, SPEND_LOGS, DayFilter(cursor="startTime", limit=datetime(2100, 1, 1)), full=False
    )
    assert counted == read
    assert {d: s.rows for d, s in counted.items()} == {date(2026, 3, 1): 3, date(2026, 3, 2): 3}
    # the oldest, partly pruned day is read to apply the horizon
    pruned = DayFilter(start_from=datetime(2026, 3, 1, 11))
    assert lake_stats(lake, SPEND_LOGS, pruned, full=False) == {
        date(2026, 3, 2): counted[date(2026, 3, 2)]
    }


def test_snapshot_digest_depends_on_values_not_on_bytes_under_nulls():
    """Two reads of the same rows may leave different bytes under null slots; equal tables must
    get equal digests, or every run rewrites the snapshot (and a run with nothing new builds)."""
    import numpy as np

    from dagster_project.lib.ingest.extract import snapshot_digest

    valid = pa.py_buffer(bytes([0b01]))  # the first value is valid, the second null

    def column(under_null: int) -> pa.Array:
        values = pa.py_buffer(np.array([1, under_null], dtype=np.int64).tobytes())
        return pa.Array.from_buffers(pa.int64(), 2, [valid, values])

    first, second = pa.table({"x": column(7)}), pa.table({"x": column(9)})
    assert first.equals(second)
    assert snapshot_digest(first) == snapshot_digest(second)
    assert snapshot_digest(first) != snapshot_digest(pa.table({"x": [1, 2]}))
