"""The Parquet lake: immutable files published through one atomically replaced manifest per table.

Layout under ``Settings.lake_dir``::

    spend_logs/_manifest.json
    spend_logs/day=2026-11-26/part-<uuid>.parquet
    snapshots/users/_manifest.json
    snapshots/users/part-<uuid>.parquet

Promises (see ``shared/reference/reliability.md`` §2.7):

- A data file becomes visible only once it is complete: it is written to ``.tmp-<uuid>.parquet``
  in its final directory, fsync'd, renamed, and the directory is fsync'd.
- Readers trust only the manifest. A manifest lists the live files *and* holds the table's
  extraction state (watermark), so data and state are published together, by one rename.
- A crash at any instruction leaves the previous manifest; files it does not list (temp files,
  renamed but unpublished files, files replaced by compaction) are orphans and are removed by
  :meth:`LakeTable.clean_orphans` under the writer lock.

Every writer of the lake holds the build database's writer lock (``lib.duckdb.connect_writer``).

:class:`Lake` is the one place that picks a table's format (``SPEND_WAREHOUSE_LAKE_FORMAT``):
``parquet``, this module's :class:`LakeTable`, or ``iceberg``, the same files published as
Iceberg tables (:mod:`dagster_project.lib.ingest.iceberg`). Both offer :class:`PublishedTable`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dagster_project.lib.duckdb import scratch
from dagster_project.settings import ICEBERG, PARQUET

if TYPE_CHECKING:
    from dagster_project.settings import ObjectStore, Settings

MANIFEST_NAME = "_manifest.json"
TMP_PREFIX = ".tmp-"
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1  # same size as the default level 3 on this data, ~35 % faster
# Rows a writer holds before writing them as a row group: at 65,536 the extraction's read peaked
# 50 MB higher at 1 M rows (456 MB against 406 MB), for the same file sizes and speed.
ROW_GROUP_ROWS = 32_768
MANIFEST_FORMAT = 1


PAUSE_ENV = "SPENDWH_PAUSE_AT"  # fault injection: the stage at which to block (then be killed)
PAUSE_FILE_ENV = "SPENDWH_PAUSE_FILE"  # written when the pause point is reached


def pause_point(stage: str, table: str | None = None) -> None:
    """Block forever at ``stage`` when ``SPENDWH_PAUSE_AT`` names it, or ``<stage>:<table>``
    at that table's ``stage`` only (crash tests only)."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted != stage and (table is None or wanted != f"{stage}:{table}"):
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(stage)
    while True:
        time.sleep(60)


# ---------------------------------------------------------------------------------------------
# Durable file primitives
# ---------------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush the content of ``path`` to stable storage."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def temp_path(directory: Path, suffix: str) -> Path:
    """A fresh temp-file name in ``directory`` (same filesystem as the final name)."""
    return directory / f"{TMP_PREFIX}{uuid.uuid4().hex}{suffix}"


def commit_file(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final`` and fsync the directory: the file is now durable."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent, path.suffix)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        commit_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


Bounds = tuple[tuple[str, datetime, datetime], ...]  # (column, min, max) per bounded column


@dataclass(frozen=True)
class LakeFile:
    """One live data file of a lake table.

    ``bounds`` holds, for some timestamp columns, the least and greatest value of the file: every
    row's value lies within (a column holding a NULL has none). Readers tell from the manifest
    alone whether a whole file passes a time filter (the reconciliation counts such a file from
    its ``rows``); a column without bounds (a file written before they were recorded) means
    "read the file".
    """

    path: str  # relative to the table directory, POSIX separators
    rows: int
    bytes: int
    partition: str | None = None  # e.g. "2026-11-26" for day=2026-11-26
    bounds: Bounds = ()

    def lower(self, column: str) -> datetime | None:
        """The least value of ``column`` in the file, if recorded."""
        return next((lo for name, lo, _ in self.bounds if name == column), None)

    def upper(self, column: str) -> datetime | None:
        """The greatest value of ``column`` in the file, if recorded."""
        return next((hi for name, _, hi in self.bounds if name == column), None)

    def to_json(self) -> dict[str, Any]:
        data = {"path": self.path, "rows": self.rows, "bytes": self.bytes, "day": self.partition}
        if self.bounds:
            data["bounds"] = {c: [lo.isoformat(), hi.isoformat()] for c, lo, hi in self.bounds}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LakeFile:
        bounds = tuple(
            (column, datetime.fromisoformat(lo), datetime.fromisoformat(hi))
            for column, (lo, hi) in (data.get("bounds") or {}).items()
        )
        return cls(data["path"], int(data["rows"]), int(data["bytes"]), data.get("day"), bounds)


def column_bounds(data: pa.Table | pa.RecordBatch, columns: Iterable[str]) -> Bounds:
    """The :attr:`LakeFile.bounds` of ``data``'s ``columns`` (none for a column with a NULL)."""
    found = []
    for column in columns:
        values = data.column(column)
        if values.null_count or not len(values):
            continue
        lo_hi = pc.min_max(values).as_py()
        found.append((column, lo_hi["min"], lo_hi["max"]))
    return tuple(found)


def widen(bounds: Bounds | None, more: Bounds) -> Bounds:
    """Bounds holding both ``bounds`` (None: nothing seen yet) and ``more``; a column missing
    from either has none."""
    if bounds is None:
        return more
    other = {column: (lo, hi) for column, lo, hi in more}
    return tuple(
        (column, min(lo, other[column][0]), max(hi, other[column][1]))
        for column, lo, hi in bounds
        if column in other
    )


@dataclass(frozen=True)
class Manifest:
    """The published version of one lake table: its live files and its extraction state."""

    version: int = 0
    files: tuple[LakeFile, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    published_at: str | None = None

    @property
    def rows(self) -> int:
        """Stored rows (copies, before deduplication)."""
        return sum(f.rows for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "published_at": self.published_at,
            "state": dict(self.state),
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            version=int(data["version"]),
            files=tuple(LakeFile.from_json(f) for f in data.get("files", [])),
            state=dict(data.get("state") or {}),
            published_at=data.get("published_at"),
        )


class LakeTable:
    """One table of the lake: a directory with data files and a manifest."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.dir = root / name

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_NAME

    def read_manifest(self) -> Manifest:
        """The published manifest, or an empty one when nothing was ever published."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Manifest()
        return Manifest.from_json(json.loads(text))

    def publish(
        self,
        *,
        add: Iterable[LakeFile] = (),
        remove: Iterable[str] = (),
        state: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Atomically publish a new manifest: ``add`` files, drop ``remove`` paths, set ``state``.

        Call only after every added file is durable (:func:`commit_file`); the manifest rename is
        the commit point of the data and the state together.
        """
        current = self.read_manifest()
        removed = set(remove)
        files = [f for f in current.files if f.path not in removed]
        known = {f.path for f in files}
        files.extend(f for f in add if f.path not in known)
        new = Manifest(
            version=current.version + 1,
            files=tuple(sorted(files, key=lambda f: f.path)),
            state=dict(current.state if state is None else state),
            published_at=datetime.now(UTC).isoformat(),
        )
        atomic_write_bytes(self.manifest_path, json.dumps(new.to_json(), indent=1).encode())
        return new

    def absolute(self, file: LakeFile | str) -> Path:
        """Absolute path of a manifest entry."""
        return self.dir / (file.path if isinstance(file, LakeFile) else file)

    def live_paths(self) -> list[Path]:
        """Absolute paths of the files the manifest lists."""
        return [self.absolute(f) for f in self.read_manifest().files]

    def expire_snapshots(self) -> int:
        """Drop old table versions; the manifest keeps none (one file, replaced on publish)."""
        return 0

    def is_metadata(self, path: Path) -> bool:
        """Whether ``path`` (under the table directory) is the format's own metadata."""
        return path.name == MANIFEST_NAME

    def clean_orphans(self) -> list[Path]:
        """Delete data and temp files the manifest does not list; return what was removed.

        Only safe under the writer lock (another writer's temp files would look orphaned).
        """
        if not self.dir.exists():
            return []
        live = {self.absolute(f).resolve() for f in self.read_manifest().files}
        removed = []
        for path in self.dir.rglob("*"):
            if not path.is_file() or self.is_metadata(path):
                continue
            if path.name.startswith(TMP_PREFIX) or (
                path.suffix == ".parquet" and path.resolve() not in live
            ):
                path.unlink()
                removed.append(path)
        return removed


class PublishedTable(Protocol):
    """What a lake table offers in either format (:class:`LakeTable`, ``IcebergLakeTable``)."""

    name: str
    dir: Path  # the writers put the table's data files under it

    def read_manifest(self) -> Manifest: ...

    def publish(
        self,
        *,
        add: Iterable[LakeFile] = (),
        remove: Iterable[str] = (),
        state: Mapping[str, Any] | None = None,
    ) -> Manifest: ...

    def absolute(self, file: LakeFile | str) -> Path: ...

    def live_paths(self) -> list[Path]: ...

    def clean_orphans(self) -> list[Path]: ...

    def expire_snapshots(self) -> int: ...


@dataclass(frozen=True)
class Lake:
    """The lake under ``root`` in one format: the one place that picks a table's implementation.

    ``parquet``: :class:`LakeTable` (a directory plus ``_manifest.json``); ``iceberg``:
    :class:`~dagster_project.lib.ingest.iceberg.IcebergLakeTable` (the same files, published by
    Iceberg commits in the SQL catalog at ``catalog_url``; with ``object_store`` the tables
    and their metadata live there, uploaded copies of the local files). Both have the same
    interface.
    """

    root: Path
    format: str = PARQUET
    catalog_url: str | None = None
    object_store: ObjectStore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        """The lake a :class:`~dagster_project.settings.Settings` configures."""
        return cls(
            settings.lake_dir,
            settings.lake_format,
            settings.iceberg_catalog_url,
            settings.object_store,
        )

    def table(self, name: str, *, day_column: str | None = None) -> PublishedTable:
        """Lake table ``name`` (e.g. ``snapshots/users``); ``day_column`` partitions it by day.

        A table directory laid out in the other format is refused: cleaning its orphans would
        delete the other format's live files.
        """
        check_layout(self.root / name, self.format)
        if self.format == ICEBERG:
            from dagster_project.lib.ingest.iceberg import IcebergLakeTable

            return IcebergLakeTable(
                self.root,
                name,
                self.iceberg_catalog,
                day_column=day_column,
                object_store=self.object_store,
            )
        return LakeTable(self.root, name)

    def table_names(self) -> list[str]:
        """Every published table of the lake, by its path under the lake."""
        if self.format == ICEBERG:
            from dagster_project.lib.ingest.iceberg import lake_table_names

            return lake_table_names(self.iceberg_catalog, self.root, self.object_store)
        manifests = self.root.rglob(MANIFEST_NAME)
        return sorted(p.parent.relative_to(self.root).as_posix() for p in manifests)

    @property
    def iceberg_catalog(self) -> str:
        """The Iceberg catalog URL: the configured one, else a SQLite file in the lake."""
        return self.catalog_url or sqlite_catalog_url(self.root)


class LakeFormatError(Exception):
    """A lake table's directory is laid out in another format than the configured one."""


def check_layout(table_dir: Path, lake_format: str) -> None:
    """Raise :class:`LakeFormatError` when ``table_dir`` holds the other format's table."""
    if lake_format == ICEBERG and (table_dir / MANIFEST_NAME).exists():
        found = PARQUET
    elif lake_format == PARQUET and any((table_dir / "metadata").glob("*.metadata.json")):
        found = ICEBERG
    else:
        return
    raise LakeFormatError(
        f"the lake table {table_dir} is in the {found} layout but SPEND_WAREHOUSE_LAKE_FORMAT is "
        f"{lake_format}; set SPEND_WAREHOUSE_LAKE_FORMAT={found}, or point SPEND_WAREHOUSE_DIR at "
        "a new directory (the first run re-reads the source into it)."
    )


def sqlite_catalog_url(lake_dir: Path) -> str:
    """The default Iceberg catalog: a SQLite file in the lake directory."""
    lake_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(lake_dir / 'catalog.db').resolve().as_posix()}"


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly the fields of ``schema`` (missing ones NULL, types cast)."""
    arrays = []
    for fld in schema:
        if fld.name in table.column_names:
            arrays.append(table.column(fld.name).cast(fld.type))
        else:
            arrays.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def parquet_writer(
    path: Path, schema: pa.Schema, *, dictionary: list[str] | bool = True
) -> pq.ParquetWriter:
    """A writer of one lake data file at ``path``, compressed as every lake file is."""
    return pq.ParquetWriter(
        path,
        schema,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        use_dictionary=dictionary,
    )


def write_single_file(
    table: PublishedTable,
    data: pa.Table,
    partition: str | None = None,
    *,
    bounded: Sequence[str] = (),
) -> LakeFile:
    """Write ``data`` as one durable (not yet published) file of ``table``, recording the
    bounds of its ``bounded`` columns."""
    return write_batches(
        table, data.schema, data.to_batches(ROW_GROUP_ROWS), partition, bounded=bounded
    )


def write_batches(
    table: PublishedTable,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    partition: str | None = None,
    *,
    bounded: Sequence[str] = (),
) -> LakeFile:
    """Stream ``batches`` (of ``schema``) into one durable (not yet published) file of
    ``table``, a row group per batch, recording the bounds of its ``bounded`` columns."""
    directory = table.dir / f"day={partition}" if partition else table.dir
    directory.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(directory, ".parquet")
    final = directory / f"part-{uuid.uuid4().hex}.parquet"
    rows, bounds = 0, None
    try:
        with parquet_writer(tmp, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
                bounds = widen(bounds, column_bounds(batch, bounded))
        commit_file(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return LakeFile(
        path=final.relative_to(table.dir).as_posix(),
        rows=rows,
        bytes=final.stat().st_size,
        partition=partition,
        bounds=bounds or (),
    )


@dataclass
class _OpenFile:
    tmp: Path
    final: Path
    writer: pq.ParquetWriter
    rows: int = 0
    bounds: Bounds | None = None
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0


class DayPartitionWriter:
    """Streams Arrow batches into per-UTC-day Parquet files of one lake table.

    Rows are split by the day of ``day_column``. Each day gets one open temp file; batches are
    buffered into row groups of about ``row_group_rows`` rows. At most ``max_open`` files are open
    at once (the least recently used is finished early), so memory and file handles stay bounded
    however many days a backlog spans. :meth:`finish` makes every file durable and returns them
    for :meth:`LakeTable.publish`, with the bounds of their ``bounded`` columns; :meth:`abort`
    deletes them.
    """

    def __init__(
        self,
        table: PublishedTable,
        schema: pa.Schema,
        day_column: str,
        *,
        row_group_rows: int = ROW_GROUP_ROWS,
        max_open: int = 16,
        max_pending_rows: int = ROW_GROUP_ROWS,
        dictionary: list[str] | bool = True,
        bounded: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.bounded = bounded
        self.schema = schema
        self.day_column = day_column
        self.row_group_rows = row_group_rows
        self.max_open = max_open
        self.max_pending_rows = max_pending_rows
        self._pending_rows = 0
        self.dictionary = dictionary
        self._open: dict[str, _OpenFile] = {}
        self._done: list[LakeFile] = []

    @property
    def rows_written(self) -> int:
        return sum(f.rows for f in self._done) + sum(o.rows for o in self._open.values())

    def write(self, batch: pa.RecordBatch) -> None:
        """Route the rows of ``batch`` to their day files."""
        if batch.num_rows == 0:
            return
        days = pc.cast(batch.column(self.day_column), pa.date32())
        if days.null_count:  # a NULL partition column cannot be routed: refuse loudly
            raise ValueError(
                f"{self.table.name}: {self.day_column} is NULL in {days.null_count} rows"
            )
        unique = pc.unique(days)
        if len(unique) == 1:
            self._append(unique[0].as_py().isoformat(), batch)
            return
        for day in unique:
            self._append(day.as_py().isoformat(), batch.filter(pc.equal(days, day)))

    def _append(self, day: str, batch: pa.RecordBatch) -> None:
        handle = self._open.pop(day, None) or self._start(day)
        self._open[day] = handle  # re-insert: dict order is the LRU order
        handle.pending.append(batch)
        handle.pending_rows += batch.num_rows
        handle.rows += batch.num_rows
        handle.bounds = widen(handle.bounds, column_bounds(batch, self.bounded))
        self._pending_rows += batch.num_rows
        if handle.pending_rows >= self.row_group_rows:
            self._flush(handle)
        while self._pending_rows > self.max_pending_rows:  # bound memory across all days
            self._flush(max(self._open.values(), key=lambda h: h.pending_rows))

    def _start(self, day: str) -> _OpenFile:
        if len(self._open) >= self.max_open:
            oldest = next(iter(self._open))
            self._finish_one(oldest)
        directory = self.table.dir / f"day={day}"
        directory.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(directory, ".parquet")
        writer = parquet_writer(tmp, self.schema, dictionary=self.dictionary)
        final = directory / f"part-{uuid.uuid4().hex}.parquet"
        return _OpenFile(tmp=tmp, final=final, writer=writer)

    def _flush(self, handle: _OpenFile) -> None:
        if handle.pending:
            handle.writer.write_table(pa.Table.from_batches(handle.pending, schema=self.schema))
            handle.pending.clear()
            self._pending_rows -= handle.pending_rows
            handle.pending_rows = 0

    def _finish_one(self, day: str) -> None:
        handle = self._open.pop(day)
        self._flush(handle)
        handle.writer.close()
        commit_file(handle.tmp, handle.final)
        self._done.append(
            LakeFile(
                path=handle.final.relative_to(self.table.dir).as_posix(),
                rows=handle.rows,
                bytes=handle.final.stat().st_size,
                partition=day,
                bounds=handle.bounds or (),
            )
        )

    def finish(self) -> list[LakeFile]:
        """Make every file durable; return them (not yet published)."""
        for day in list(self._open):
            self._finish_one(day)
        done, self._done = self._done, []
        return done

    def abort(self) -> None:
        """Delete every file of this writer (nothing was published)."""
        for handle in self._open.values():
            handle.writer.close()
            handle.tmp.unlink(missing_ok=True)
        self._open.clear()
        self._pending_rows = 0
        for file in self._done:
            self.table.absolute(file).unlink(missing_ok=True)
        self._done.clear()


# ---------------------------------------------------------------------------------------------
# Compaction
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupRule:
    """How duplicate copies of a row are resolved: one winner per ``key`` by ``order_by``."""

    key: str
    order_by: str  # a DuckDB ORDER BY list; the first row wins

    def qualify(self) -> str:
        """A DuckDB ``QUALIFY`` clause keeping the winner of each key."""
        return f"QUALIFY row_number() OVER (PARTITION BY {self.key} ORDER BY {self.order_by}) = 1"


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction pass did."""

    partitions: tuple[str, ...] = ()
    files_before: int = 0
    files_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    new_files: tuple[LakeFile, ...] = ()

    def merged(self, other: CompactionResult) -> CompactionResult:
        return replace(
            self,
            partitions=self.partitions + other.partitions,
            files_before=self.files_before + other.files_before,
            files_after=self.files_after + other.files_after,
            rows_before=self.rows_before + other.rows_before,
            rows_after=self.rows_after + other.rows_after,
            new_files=self.new_files + other.new_files,
        )


def partitions_to_compact(manifest: Manifest, min_files: int) -> list[str]:
    """Day partitions holding at least ``min_files`` files, oldest first."""
    counts: dict[str, int] = {}
    for f in manifest.files:
        if f.partition is not None:
            counts[f.partition] = counts.get(f.partition, 0) + 1
    return sorted(day for day, n in counts.items() if n >= min_files)


def deduplicated(
    table: PublishedTable, files: Sequence[LakeFile], schema: pa.Schema, rule: DedupRule
) -> Iterator[pa.RecordBatch]:
    """The rows of ``files`` with one winner per key (``rule``), conformed to ``schema``, in
    batches of ``ROW_GROUP_ROWS`` (DuckDB spills beyond its limit, :func:`scratch`)."""
    paths = [str(table.absolute(f)) for f in files]
    with scratch() as con:
        relation = con.sql(
            f"SELECT * FROM read_parquet({paths!r}, union_by_name = true, "
            f"hive_partitioning = false) {rule.qualify()}"
        )
        for batch in relation.to_arrow_reader(ROW_GROUP_ROWS):
            yield from conform_table(pa.Table.from_batches([batch]), schema).to_batches()


def merge_days(
    table: PublishedTable,
    new: Sequence[LakeFile],
    days: Collection[str],
    rule: DedupRule,
    writer: DayPartitionWriter,
) -> tuple[list[LakeFile], list[str]]:
    """What to publish so that the lake never holds two versions of a key: ``(add, remove)``.

    ``new`` files (durable, not yet published) outside ``days`` are added as they are. The
    partitions of ``days`` (where a new row supersedes a stored version, in that day or in
    another) are rewritten together: their live files and new ones, one winner per key, written
    by ``writer`` into fresh day files that replace their live files. The new files of those
    days are never published: delete them after the publish (a crash leaves them as orphans,
    which the next run cleans).
    """
    if not days:
        return list(new), []
    old = [f for f in table.read_manifest().files if f.partition in days]
    parts = old + [f for f in new if f.partition in days]
    try:
        for batch in deduplicated(table, parts, writer.schema, rule):
            writer.write(batch)
        rewritten = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return [f for f in new if f.partition not in days] + rewritten, [f.path for f in old]


def compact(
    table: PublishedTable,
    schema: pa.Schema,
    rule: DedupRule,
    *,
    min_files: int = 12,
    bounded: Sequence[str] = (),
) -> CompactionResult:
    """Rewrite every day partition with ``min_files`` or more files as one deduplicated file
    (recording the bounds of its ``bounded`` columns).

    Each partition is committed on its own (new file durable, manifest published, then the
    replaced files deleted), so a crash loses no data: at worst orphans remain to be cleaned.
    """
    result = CompactionResult()
    for day in partitions_to_compact(table.read_manifest(), min_files):
        old = [f for f in table.read_manifest().files if f.partition == day]
        rows = deduplicated(table, old, schema, rule)
        new = write_batches(table, schema, rows, partition=day, bounded=bounded)
        table.publish(add=[new], remove=[f.path for f in old])
        for f in old:
            table.absolute(f).unlink(missing_ok=True)
        fsync_dir(table.dir / f"day={day}")
        result = result.merged(
            CompactionResult(
                partitions=(day,),
                files_before=len(old),
                files_after=1,
                rows_before=sum(f.rows for f in old),
                rows_after=new.rows,
                new_files=(new,),
            )
        )
    return result
