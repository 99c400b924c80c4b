"""One extraction pass: source snapshot -> Parquet lake -> ``raw.*`` in the build DuckDB.

The order of every step is what makes a kill at any instruction safe:

1. catch the DuckDB cache up with the lake (files published by a run killed before its merge);
2. stream the window from PostgreSQL, drop rows already stored unchanged, write temp files;
3. make the files durable, then publish the manifest with the new watermark (the commit point);
4. merge the new files into DuckDB (idempotent; step 1 of the next run redoes it if killed).

A long backlog is split into chunks, each going through steps 2-4 before the next starts.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dagster_project.lib.duckdb import EXTRACTION_MEMORY_LIMIT
from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest import load as raw_load
from dagster_project.lib.ingest.changes import (
    READ,
    ChangeMarker,
    Unchanged,
    reusable_record,
    save_record,
    unchanged_key,
)
from dagster_project.lib.ingest.lake import (
    DayPartitionWriter,
    Lake,
    LakeFile,
    PublishedTable,
    compact,
    merge_days,
    pause_point,
    write_single_file,
)
from dagster_project.lib.ingest.reconcile import compare_history
from dagster_project.lib.ingest.source import (
    ContentDigest,
    FactTable,
    SourceSchemaError,
    SourceSession,
    conform_batch,
    content_digests,
    drift,
    fact_select,
    missing_required,
    prefetch,
    snapshot_select,
)
from dagster_project.lib.ingest.windows import (
    CREATED_AT,
    Window,
    WindowOptions,
    cursor_column,
    incremental_window,
    next_state,
    parse_ts,
    rollback_window,
    window_state,
)
from dagster_project.lib.sql import snake_case, table_name
from dagster_project.lib.times import utcnow

log = logging.getLogger(__name__)

COMPACT_MIN_FILES = 12
MAINTENANCE_MIN_FILES = 2  # the daily maintenance leaves one file per day partition

Progress = Callable[[str], None]
SOURCE_DISABLED = "source_disabled"  # the table exists, is empty, and the lake holds history


@dataclass
class FactResult:
    """What one extraction of a fact table did (becomes asset metadata)."""

    table: str
    status: str = "present"  # or "absent"
    cursor: str | None = None
    rows_read: int = 0
    rows_stored: int = 0
    files_written: int = 0
    chunks: int = 0
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    drift: list[str] = field(default_factory=list)
    created_at_index: bool = False
    repaired_days: list[str] = field(default_factory=list)
    pruned_days: list[str] = field(default_factory=list)
    rows_merged: int = 0
    read_seconds: float = 0.0  # source -> durable Parquet files
    load_seconds: float = 0.0  # Parquet -> raw.<table> in DuckDB
    rows_in_warehouse: int = 0
    live_files: int = 0
    compacted_partitions: int = 0
    expired_snapshots: int = 0
    unchanged_since: datetime | None = None  # the read skipped: nothing changed since then

    def note_period(self, batch: pa.RecordBatch, column: str) -> None:
        """Widen the covered period with the rows of ``batch``."""
        if batch.num_rows == 0:
            return
        lo_hi = pc.min_max(batch.column(column)).as_py()
        lo, hi = lo_hi["min"], lo_hi["max"]
        if lo is not None:
            self.period_start = lo if self.period_start is None else min(self.period_start, lo)
        if hi is not None:
            self.period_end = hi if self.period_end is None else max(self.period_end, hi)

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata."""
        iso = lambda v: v.isoformat() if v else None  # noqa: E731
        return {
            "status": self.status,
            "cursor": self.cursor,
            "rows_read": self.rows_read,
            "rows_stored": self.rows_stored,
            "files_written": self.files_written,
            "chunks": self.chunks,
            "watermark_before": iso(self.watermark_before),
            "watermark": iso(self.watermark_after),
            "period_start": iso(self.period_start),
            "period_end": iso(self.period_end),
            "drift_columns": ", ".join(self.drift) or "none",
            "created_at_index": self.created_at_index,
            "repaired_days": ", ".join(self.repaired_days) or "none",
            "pruned_days": ", ".join(self.pruned_days) or "none",
            "rows_merged": self.rows_merged,
            "read_seconds": round(self.read_seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "rows_in_warehouse": self.rows_in_warehouse,
            "live_files": self.live_files,
            "compacted_partitions": self.compacted_partitions,
            "expired_snapshots": self.expired_snapshots,
            "unchanged_since": iso(self.unchanged_since),
        }


def extract_fact(
    session: SourceSession,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    fact: FactTable,
    *,
    options: WindowOptions = WindowOptions(),  # noqa: B008 (frozen)
    include_payload: bool = False,
    rollback_days: int = 0,
    maintenance: bool = False,
    unchanged: Unchanged | None = None,
    progress: Progress = log.info,
) -> FactResult:
    """Extract ``fact`` incrementally (plus an optional rollback re-read) into lake and DuckDB.

    With ``maintenance`` (the daily run), every day partition holding more than one file is
    compacted and the lake's old snapshots expire; otherwise only partitions that gathered
    many files are compacted. With ``unchanged`` and the session watching ``fact``, the
    incremental read is skipped while the source table and the lake table are unchanged since
    the last complete one (:meth:`_FactRun.read_incremental`).
    """
    # the merge spills beyond this, whatever the run's DuckDB limit: a large first load stays small
    con.execute(f"SET memory_limit = '{EXTRACTION_MEMORY_LIMIT}'")
    result = FactResult(table=fact.raw_table)
    columns = _source_columns(session, con, fact, result, progress)
    if columns is None:
        return result
    table = lake.table(fact.raw_table, day_column=fact.partition_column)
    run = _FactRun(session, con, table, fact, columns, result, include_payload)
    run.catch_up(progress)
    quiet = run.unchanged_read(options, unchanged) if rollback_days == 0 else None
    run.read_incremental(options, progress, quiet=quiet)
    if rollback_days > 0:
        run.read_rollback(rollback_days, progress)
    run.compact(MAINTENANCE_MIN_FILES if maintenance else COMPACT_MIN_FILES)
    if maintenance:
        result.expired_snapshots = table.expire_snapshots()
    run.record_source_status(progress)
    if quiet is not None and quiet.record is None:
        quiet.save()  # a complete read: the next run may skip it while nothing changes
    return result


def _source_columns(
    session: SourceSession,
    con: duckdb.DuckDBPyConnection,
    fact: FactTable,
    result: FactResult,
    progress: Progress,
) -> dict | None:
    """The source's columns of ``fact``, checked against the contract (None: table absent)."""
    name = table_name(session.prefix, fact.source)
    columns = session.columns(fact.source)
    if columns is None:
        if fact.source not in rc.OPTIONAL_TABLES:
            raise SourceSchemaError(f"required table {name!r} is missing in the source")
        progress(f"{name} is absent in the source (logging disabled?); recorded as absent")
        raw_load.ensure_fact_table(con, fact)
        raw_load.record_source_status(con, fact.source, fact.raw_table, "absent", None)
        result.status = "absent"
        return None
    missing = missing_required(fact, columns)
    if missing:
        raise SourceSchemaError(
            f"{name!r} lacks required column(s) {', '.join(missing)}; is this a proxy database?"
        )
    result.drift = drift(fact, columns)
    if result.drift:
        progress(f"{name}: columns not in the raw contract (not landed): {result.drift}")
    return columns


@dataclass(frozen=True)
class Staged:
    """One read's durable files, ready to publish: ``add`` replaces the ``remove`` paths;
    ``discard`` holds new files absorbed into a rewritten day (deleted after the publish)."""

    add: list[LakeFile]
    remove: list[str]
    discard: list[LakeFile]
    newest: datetime | None  # the largest cursor value read
    rows: int  # rows this read stored


@dataclass
class _QuietRead:
    """The record that lets a run skip its incremental read while the source table and the lake
    table are unchanged since the last complete one (lib/ingest/changes.py).

    The key joins the source's change marker, read before this run's snapshot, to the lake's
    manifest *after* the run: the next run compares its own marker and the manifest it finds. A
    skip needs the ``created_at`` cursor, which PostgreSQL fills with the inserting transaction's
    start: a row the last read's snapshot held lies below that read's cap, so a later window
    holds no row the last one did not. A ``created_at`` a client set ahead of the database's
    clock (and the proxy's own ``startTime``, hence no skip with that cursor) can enter a later
    window without any write: such a row is read by the first run after the next write, or once
    the record is older than its maximum age.
    """

    unchanged: Unchanged
    marker: ChangeMarker
    lake: PublishedTable
    raw_table: str
    inputs: Mapping[str, Any]
    now: datetime
    record: dict[str, Any] | None = None  # the standing record: skip the read

    def key(self) -> str | None:
        return unchanged_key(self.marker, self.lake.read_manifest(), **self.inputs)

    def save(self) -> None:
        key = self.key()
        if key is not None:
            save_record(self.unchanged, READ, self.raw_table, key, self.now, {})


@dataclass
class _FactRun:
    """One fact table's extraction, step by step, in the order that makes a kill safe."""

    session: SourceSession
    con: duckdb.DuckDBPyConnection
    lake: PublishedTable
    fact: FactTable
    columns: dict
    result: FactResult
    include_payload: bool

    @property
    def name(self) -> str:
        return table_name(self.session.prefix, self.fact.source)

    @cached_property
    def created_at_index(self) -> bool:
        """Whether an index on the source table leads with ``created_at`` (asked once a run)."""
        return self.session.has_leading_index(self.fact.source, CREATED_AT)

    def catch_up(self, progress: Progress) -> None:
        """Step 1: merge lake files published by a run killed before its merge."""
        self.lake.clean_orphans()
        merged = raw_load.sync_fact(self.con, self.fact, self.lake)
        if merged:
            progress(
                f"{self.fact.raw_table}: merged {merged} rows of earlier lake files into DuckDB"
            )

    def unchanged_read(
        self, options: WindowOptions, unchanged: Unchanged | None
    ) -> _QuietRead | None:
        """The quiet-read record of this run; None where a skip cannot apply (no records kept,
        the marker not read, the ``startTime`` cursor)."""
        marker = self.session.markers.get(self.fact.source)
        if unchanged is None or marker is None or cursor_column(self.columns) != CREATED_AT:
            return None
        quiet = _QuietRead(
            unchanged,
            marker,
            self.lake,
            self.fact.raw_table,
            inputs={
                "columns": sorted(self.columns),
                "options": repr(options),
                "created_at_index": self.created_at_index,
                "payload": self.include_payload,
            },
            now=datetime.now(UTC),
        )
        quiet.record = reusable_record(
            unchanged, READ, self.fact.raw_table, quiet.key(), now=quiet.now
        )
        return quiet

    def read_incremental(
        self, options: WindowOptions, progress: Progress, quiet: _QuietRead | None = None
    ) -> None:
        """Steps 2-4 for each chunk of the window after the watermark; nothing while ``quiet``
        holds a standing record."""
        result, session = self.result, self.session
        state = dict(self.lake.read_manifest().state)
        result.cursor = cursor_column(self.columns)
        result.watermark_before = result.watermark_after = parse_ts(state.get("watermark"))
        if result.cursor == CREATED_AT:
            result.created_at_index = self.created_at_index
        if quiet is not None and quiet.record is not None:
            result.unchanged_since = datetime.fromisoformat(quiet.record["at"])
            progress(
                f"{self.name}: source and lake unchanged since the read at {quiet.record['at']} "
                "(PostgreSQL's write counts, the lake's manifest): nothing to read"
            )
            return
        bounded = not result.created_at_index
        settled = parse_ts(state.get("settled")) if state.get("cursor") == result.cursor else None
        window = incremental_window(
            result.cursor,
            result.watermark_before,
            session.cap,
            options,
            bounded=bounded,
            settled=settled,
        )
        if not window.lower_inclusive:
            progress(f"{self.name}: rows at the watermark are settled; reading only newer rows")
        chunks = session.plan(self.fact.source, window, options.chunk_rows)
        result.chunks = len(chunks)
        for number, chunk in enumerate(chunks, start=1):
            staged = self.read(chunk.restrict(window))
            files, newest = staged.add, staged.newest
            if newest is None and not files:
                continue  # nothing in this chunk: state unchanged
            new_wm = max(filter(None, [result.watermark_after, newest]))
            new_state = next_state(
                state, result.cursor, new_wm, session.cap, chunk.upper, options, bounded=bounded
            )
            pause_point("before_publish")
            # nothing new: no new manifest version either (a later "settled" alone is published
            # only when it lets the next run skip the rows at the watermark)
            if files or window_state(new_state) != window_state(state):
                self.publish(staged, new_state)
                state = new_state
            result.watermark_after = new_wm
            pause_point("after_publish")
            self.merge(files)
            progress(
                f"{self.fact.raw_table}: chunk {number}/{len(chunks)} committed "
                f"({staged.rows} rows stored, watermark {new_wm.isoformat()})"
            )

    def read_rollback(self, days: int, progress: Progress) -> None:
        """The wider re-read: the last ``days`` days and every older day that differs.

        The whole retained history is compared, source against lake, in this run's snapshot:
        every day that differs is re-read, however old (rows later than any window, a lost
        batch). A rollback never moves the watermark.
        """
        result = self.result
        history = compare_history(self.session, self.lake, self.fact, self.columns)
        result.pruned_days = [d.isoformat() for d in history.pruned]
        repair = [m.day for m in history.mismatches if m.source is not None]
        result.repaired_days = [d.isoformat() for d in repair]
        if repair:
            progress(
                f"{self.fact.raw_table}: re-reading days that differ from the source: {repair}"
            )
        staged = self.read(rollback_window(result.cursor, self.session.cap, days, repair))
        files = staged.add
        if files:
            self.publish(staged)  # state unchanged
        self.merge(files)
        progress(
            f"{self.fact.raw_table}: rollback re-read of {days} day(s) and "
            f"{len(repair)} differing older day(s) stored {staged.rows} "
            "changed rows"
        )

    def compact(self, min_files: int) -> None:
        """Rewrite day partitions that have gathered ``min_files`` files or more."""
        compaction = compact(
            self.lake,
            self.fact.schema,
            raw_load.dedup_rule(self.fact),
            min_files=min_files,
            bounded=self.fact.bounded_columns,
        )
        raw_load.mark_loaded(self.con, self.lake, compaction.new_files)
        self.result.compacted_partitions = len(compaction.partitions)
        self.result.live_files = len(self.lake.read_manifest().files)

    def record_source_status(self, progress: Progress) -> None:
        """Record whether the source still logs: an emptied table is unknown spend, never zero."""
        result, fact = self.result, self.fact
        result.rows_in_warehouse = raw_load.row_count(self.con, fact.raw_table)
        detail = None
        if (
            result.rows_in_warehouse
            and not self.session.query(
                f"SELECT EXISTS (SELECT 1 FROM {self.session.table(fact.source)})"
            )[0][0]
        ):
            # spend logs disabled (disable_spend_logs) or the table emptied: the history stays,
            # and what happened since is unknown, never zero
            result.status = SOURCE_DISABLED
            detail = (
                f"{self.name} is empty while the warehouse holds {result.rows_in_warehouse} rows"
            )
            progress(
                f"source disabled: {detail} (disable_spend_logs, or emptied); history kept, "
                "spend since then unknown"
            )
        raw_load.record_source_status(
            self.con, fact.source, fact.raw_table, result.status, result.rows_in_warehouse, detail
        )

    def merge(self, files: list[LakeFile]) -> None:
        """Step 4: merge published ``files`` into DuckDB, timing it."""
        began = time.monotonic()
        self.result.rows_merged += raw_load.merge_files(self.con, self.fact, self.lake, files)
        self.result.load_seconds += time.monotonic() - began

    def writer(self) -> DayPartitionWriter:
        """A writer of this table's day files."""
        fact = self.fact
        return DayPartitionWriter(
            self.lake,
            fact.schema,
            fact.partition_column,
            dictionary=rc.dictionary_columns(fact.columns),
            bounded=fact.bounded_columns,
        )

    def read(self, window: Window) -> Staged:
        """Step 2: stream ``window`` into durable (unpublished) day files.

        Returns them staged for the publish (days where a row supersedes a stored version are
        rewritten, :func:`merge_days`) with the largest cursor value read (the candidate
        watermark; rows that were dropped as unchanged count too).
        """
        result, fact, con = self.result, self.fact, self.con
        began = time.monotonic()
        cursor = snake_case(window.cursor)
        batch_id = uuid.uuid4().hex
        extracted_at = utcnow()
        newest: datetime | None = None
        replaced: set[str] = set()
        compare = raw_load.row_count(con, fact.raw_table) > 0
        writer = self.writer()
        try:
            sql = fact_select(self.session, fact, self.columns, window, self.include_payload)
            for raw_batch in prefetch(self.session.stream(sql)):
                batch = conform_batch(raw_batch, fact.schema, extracted_at, batch_id)
                result.rows_read += batch.num_rows
                top = pc.max(batch.column(cursor)).as_py()
                if top is not None and (newest is None or top > newest):
                    newest = top
                if compare:
                    changes = raw_load.filter_changed(con, fact, pa.Table.from_batches([batch]))
                    replaced |= changes.replaced_days
                    batches = changes.rows.to_batches()
                else:
                    batches = [batch]
                for part in batches:
                    result.rows_stored += part.num_rows
                    result.note_period(part, fact.partition_column)
                    writer.write(part)
                pause_point("mid_read")
            files = writer.finish()
            add, remove = merge_days(
                self.lake, files, replaced, raw_load.dedup_rule(fact), self.writer()
            )
        except BaseException:
            writer.abort()
            raise
        result.files_written += len(files)
        result.read_seconds += time.monotonic() - began
        pa.default_memory_pool().release_unused()
        discard = [f for f in files if f not in add]
        return Staged(add, remove, discard, newest, sum(f.rows for f in files))

    def publish(self, staged: Staged, state: Mapping[str, Any] | None = None) -> None:
        """Step 3: publish ``staged`` files (with the new ``state``), then delete what they
        replaced."""
        self.lake.publish(add=staged.add, remove=staged.remove, state=state)
        for path in staged.remove:
            self.lake.absolute(path).unlink(missing_ok=True)
        for file in staged.discard:
            self.lake.absolute(file).unlink(missing_ok=True)


@dataclass
class SnapshotResult:
    """What one entity snapshot did."""

    source: str
    raw_table: str
    status: str  # present | absent
    rows: int = 0
    changed: bool = False

    @property
    def present(self) -> bool:
        return self.status == "present"


def snapshot_digest(table: pa.Table) -> str:
    """Content fingerprint of a snapshot: uncompressed Parquet bytes, which encode only the
    values (Arrow IPC bytes also carry whatever lies under null slots and differed between two
    reads of the same rows, so every run rewrote the users' and keys' snapshots)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", write_statistics=False)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _plain(table: pa.Table) -> pa.Table:
    """``table`` without driver field metadata."""
    return table.cast(pa.schema([pa.field(f.name, f.type) for f in table.schema]))


def extract_snapshots(
    session: SourceSession,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    progress: Progress = log.info,
) -> list[SnapshotResult]:
    """Snapshot every entity table of the contract into the lake and ``raw.*``.

    A missing required table is an error raised before anything is written; a missing optional
    table is logged once and recorded as absent. Full snapshots are compared first by the
    content digest PostgreSQL computes (:func:`content_digests`, one query): only a table whose
    digest differs from the one its lake manifest records is fetched, so a run with nothing
    new transfers no snapshot rows.
    """
    found = {source: session.columns(source) for source in rc.SNAPSHOT_TABLES}
    missing = [s for s, cols in found.items() if cols is None and s not in rc.OPTIONAL_TABLES]
    if missing:
        names = ", ".join(repr(table_name(session.prefix, s)) for s in missing)
        raise SourceSchemaError(
            f"required proxy table(s) {names} missing; check PROXY_TABLE_PREFIX and that the "
            "proxy's migrations ran"
        )
    digests = content_digests(
        session,
        {s: cols for s, cols in found.items() if cols is not None and not _appended(s, cols)},
    )
    results = []
    for source, raw_table in rc.SNAPSHOT_TABLES.items():
        columns = found[source]
        if columns is None:
            progress(f"{table_name(session.prefix, source)} is absent; {raw_table} not refreshed")
            results.append(SnapshotResult(source, raw_table, "absent"))
            continue
        table = lake.table(f"snapshots/{raw_table}")
        if source in digests:
            result = _replace_snapshot(
                session, con, table, source, raw_table, columns, digests[source]
            )
        else:
            result = _append_snapshot(session, con, table, source, raw_table, columns)
        results.append(result)
    raw_load.record_source_statuses(
        con,
        [(r.source, r.raw_table, r.status, r.rows if r.present else None, None) for r in results],
    )
    return results


def _appended(source: str, columns: dict) -> bool:
    """Whether ``source`` is read incrementally (an older table without its timestamp is not)."""
    return source in rc.INCREMENTAL_SNAPSHOTS and rc.INCREMENTAL_SNAPSHOTS[source][1] in columns


def _replace_snapshot(
    session: SourceSession,
    con: duckdb.DuckDBPyConnection,
    lake: PublishedTable,
    source: str,
    raw_table: str,
    columns: dict,
    digest: ContentDigest,
) -> SnapshotResult:
    """Full snapshot: replace the lake file and ``raw.<table>`` when the content changed.

    An unchanged ``digest`` skips the fetch. A changed one fetches the table and compares the
    Parquet digest of its values (:func:`snapshot_digest`): equal values (a digest that moved
    for another reason, or a lake written before the digest was recorded) keep the file and
    only record the new digest.
    """
    manifest = lake.read_manifest()
    state = manifest.state
    if manifest.files and state.get("source_digest") == digest.digest:
        changed = False
    else:
        data = _plain(session.fetch_table(snapshot_select(session, source, columns)))
        content = snapshot_digest(data)
        changed = state.get("sha256") != content or not manifest.files
        if changed:
            file = write_single_file(lake, data)
            lake.publish(
                add=[file],
                remove=[f.path for f in manifest.files],
                state={
                    "sha256": content,
                    "source_digest": digest.digest,
                    "rows": data.num_rows,
                    "extracted_at": utcnow().isoformat(),
                },
            )
            for old in manifest.files:
                lake.absolute(old).unlink(missing_ok=True)
        else:
            lake.publish(state={**state, "source_digest": digest.digest})
    if changed or not raw_load.snapshot_loaded(con, raw_table, lake):
        raw_load.replace_snapshot(con, raw_table, lake, lake.read_manifest().files[0])
    return SnapshotResult(source, raw_table, "present", digest.rows, changed)


def _append_snapshot(
    session: SourceSession,
    con: duckdb.DuckDBPyConnection,
    lake: PublishedTable,
    source: str,
    raw_table: str,
    columns: dict,
) -> SnapshotResult:
    """Incremental snapshot of an append-only table (the audit log) on its timestamp.

    Reads rows changed since the watermark minus an overlap, stores those whose key is not
    stored yet, and moves the watermark only after the file is published with it.
    """
    key, cursor = rc.INCREMENTAL_SNAPSHOTS[source]
    state = lake.read_manifest().state
    watermark = parse_ts(state.get("watermark"))
    lower = watermark - WindowOptions().overlap if watermark else None
    window = Window(cursor=cursor, cap=session.cap, lower=lower)
    select = snapshot_select(session, source, columns) + f" WHERE {window.where()}"
    data = _plain(session.fetch_table(select))
    newest = pc.max(data.column(snake_case(cursor))).as_py() if data.num_rows else None
    if raw_load.table_exists(con, raw_table) and data.num_rows:
        data = raw_load.new_keys(con, raw_table, snake_case(key), data)
    new_wm = max(filter(None, [watermark, newest]), default=None)
    # the first run stores a file even when empty: it carries the columns of raw.<table>
    changed = data.num_rows > 0 or not lake.read_manifest().files
    if changed or new_wm != watermark:
        files = [write_single_file(lake, data)] if changed else []
        lake.publish(add=files, state={"watermark": new_wm.isoformat() if new_wm else None})
    if changed or not raw_load.table_exists(con, raw_table):
        raw_load.rebuild_snapshot(
            con, raw_table, lake, snake_case(key), f"{snake_case(cursor)} DESC"
        )
    return SnapshotResult(source, raw_table, "present", raw_load.row_count(con, raw_table), changed)
