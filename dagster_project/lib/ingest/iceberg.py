"""The lake as Iceberg tables: our Parquet files, published by one Iceberg commit per change.

``SPEND_WAREHOUSE_LAKE_FORMAT=iceberg`` swaps :class:`~dagster_project.lib.ingest.lake.LakeTable`
(a directory plus ``_manifest.json``) for :class:`IcebergLakeTable`, with the same interface, so
the writers, the merge into DuckDB, the reconciliation and the checks are unchanged:

- The data files are written exactly as before (temp file, fsync, rename into
  ``<lake>/<table>/day=YYYY-MM-DD/part-<uuid>.parquet``); the table's Iceberg location is that
  same directory, its metadata goes to ``<lake>/<table>/metadata/``.
- :meth:`IcebergLakeTable.publish` registers the added files and drops the removed ones in ONE
  Iceberg commit (a fast append, or an overwrite when files are removed) whose snapshot summary
  carries the extraction state (watermark) as the property ``spend-warehouse.state``: data and
  watermark become visible together, by the catalog's atomic swap of the metadata pointer, as
  the manifest rename does for the Parquet layout. Schema evolution (new columns), the day
  partition spec and the name mapping travel in the same commit.
- :meth:`IcebergLakeTable.read_manifest` rebuilds a :class:`Manifest` from the current snapshot.
- A process killed before the commit leaves the previous snapshot; its files are orphans, removed
  by :meth:`IcebergLakeTable.clean_orphans` (never a file under ``metadata/``).

On object storage (``SPEND_WAREHOUSE_LAKE_URI=s3://bucket/prefix``) the extraction still writes
every data file durably on local disk first (the merge into DuckDB, the reconciliation and the
compaction read those local copies); the table's location is ``<lake uri>/<table>`` and
:meth:`IcebergLakeTable.publish` first uploads each added file to the same relative key there
(one PUT per object, atomic; its size checked), THEN makes the one commit, whose data file paths
are the ``s3://`` ones; the metadata goes to the bucket too. A kill between the upload and the
commit leaves the previous snapshot and orphan objects, which :meth:`clean_orphans` deletes with
the local orphans; removed files are deleted from the bucket right after their commit. A live
file without a local copy (a new machine) is downloaded when the manifest is read.

Fact tables are partitioned by ``day(<partition column>)``, which is what our ``day=`` directories
hold, so another engine prunes by day. The catalog is pyiceberg's SQL catalog: a SQLite file
under the lake by default, or a PostgreSQL database; every table lives in the namespace
:data:`NAMESPACE` and is named after its lake path (``snapshots/users`` ->
``snapshots__users``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dagster_project.lib.ingest.lake import (
    Bounds,
    LakeFile,
    LakeTable,
    Manifest,
    commit_file,
    pause_point,
    temp_path,
)

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table, Transaction

    from dagster_project.settings import ObjectStore

NAMESPACE = "spend_warehouse"
CATALOG_NAME = "spend_warehouse"
STATE_PROPERTY = "spend-warehouse.state"  # snapshot summary: the extraction state (JSON)
LAKE_TABLE_PROPERTY = "spend-warehouse.lake-table"  # table property: the lake path of the table
METADATA_DIR = "metadata"
DAY_FIELD = "day"
# Snapshots kept: the current one and a few before it (their watermarks, for inspection). Replaced
# data files are deleted right after their commit, so older snapshots are not for time travel.
KEEP_SNAPSHOTS = 10
EXPIRE_AT = 2 * KEEP_SNAPSHOTS  # expire once this many have gathered: one extra commit in ten
TABLE_PROPERTIES = {
    "format-version": "2",
    # keep the last metadata files only (each commit writes one)
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


@lru_cache(maxsize=16)
def catalog(url: str, warehouse: str, store: ObjectStore | None = None) -> SqlCatalog:
    """The SQL catalog at ``url`` (one per process, URL and store), with the namespace created.

    With ``store`` its FileIO reads and writes the tables' metadata and data on object storage.
    """
    from pyiceberg.catalog.sql import SqlCatalog

    found = SqlCatalog(CATALOG_NAME, uri=url, warehouse=warehouse, **s3_properties(store))
    found.create_namespace_if_not_exists(NAMESPACE)
    return found


def s3_properties(store: ObjectStore | None) -> dict[str, str]:
    """pyiceberg's FileIO properties for ``store`` (path-style addressing: pyarrow's default)."""
    from pyiceberg.io import S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_REGION, S3_SECRET_ACCESS_KEY

    if store is None:
        return {}
    properties = {S3_REGION: store.region}
    if store.endpoint:
        properties[S3_ENDPOINT] = store.endpoint
    if store.access_key_id and store.secret_access_key:
        properties[S3_ACCESS_KEY_ID] = store.access_key_id
        properties[S3_SECRET_ACCESS_KEY] = store.secret_access_key
    return properties


@lru_cache(maxsize=4)
def s3_filesystem(store: ObjectStore) -> FileSystem:
    """pyarrow's S3 filesystem for ``store`` (paths ``bucket/key``), one per process and store."""
    from pyarrow.fs import S3FileSystem

    options: dict[str, Any] = {"region": store.region}
    if store.endpoint:
        scheme, _, host = store.endpoint.partition("://")
        options.update(endpoint_override=host, scheme=scheme)
    if store.access_key_id and store.secret_access_key:
        options.update(access_key=store.access_key_id, secret_key=store.secret_access_key)
    return S3FileSystem(**options)


def object_path(uri: str) -> str:
    """The pyarrow path (``bucket/key``) of an ``s3://bucket/key`` URI."""
    return uri.removeprefix("s3://")


def upload(fs: FileSystem, local: Path, uri: str) -> None:
    """Put ``local`` at ``uri``, whole or not at all (PUT or multipart upload); check its size."""
    from pyarrow.fs import LocalFileSystem, copy_files

    copy_files(
        str(local), object_path(uri), source_filesystem=LocalFileSystem(), destination_filesystem=fs
    )
    size = fs.get_file_info(object_path(uri)).size
    if size != local.stat().st_size:
        raise OSError(
            f"the upload of {local} to {uri} left {size} bytes, not {local.stat().st_size}; "
            "check the object store and run again."
        )


def download(fs: FileSystem, uri: str, local: Path) -> None:
    """Copy the object at ``uri`` to ``local`` durably (temp file, fsync, rename)."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(local.parent, local.suffix)
    try:
        with fs.open_input_stream(object_path(uri)) as source, open(tmp, "wb") as target:
            while chunk := source.read(1 << 22):
                target.write(chunk)
        commit_file(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def list_objects(fs: FileSystem, uri: str) -> list[str]:
    """The URIs of every object under the ``s3://`` prefix ``uri`` (a "directory")."""
    from pyarrow.fs import FileSelector, FileType

    found = fs.get_file_info(FileSelector(object_path(uri), recursive=True, allow_not_found=True))
    return [f"s3://{info.path}" for info in found if info.type == FileType.File]


def identifier(name: str) -> str:
    """The Iceberg identifier of lake table ``name`` (``snapshots/users``: ``snapshots__users``)."""
    return f"{NAMESPACE}.{name.replace('/', '__')}"


def file_uri(path: Path) -> str:
    """The location string of a local path as Iceberg stores it (``file:///abs/path``)."""
    return f"file://{path.resolve().as_posix()}"


def partition_of(relative: str) -> str | None:
    """The day of a file from its path under the table (``day=2026-11-26/part-x.parquet``)."""
    head, _, rest = relative.partition("/")
    return head.removeprefix("day=") if rest and head.startswith("day=") else None


def state_of(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The extraction state a snapshot summary carries (empty when it carries none)."""
    text = (summary or {}).get(STATE_PROPERTY)
    return dict(json.loads(text)) if text else {}


def live_data_files(table: Table) -> list[DataFile]:
    """The data files of ``table``'s current snapshot."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
    ]


def timestamp_bounds(schema: Schema, data_file: DataFile) -> Bounds:
    """The :attr:`LakeFile.bounds` of a data file's timestamp columns: the column bounds Iceberg
    keeps in its manifests (taken from the Parquet statistics when the file was added), for the
    columns it counts no NULL in."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import TimestampType
    from pyiceberg.utils.datetime import micros_to_timestamp

    lower, upper = data_file.lower_bounds or {}, data_file.upper_bounds or {}
    nulls = data_file.null_value_counts or {}
    return tuple(
        (
            field.name,
            micros_to_timestamp(from_bytes(field.field_type, lower[field.field_id])),
            micros_to_timestamp(from_bytes(field.field_type, upper[field.field_id])),
        )
        for field in schema.fields
        if isinstance(field.field_type, TimestampType)
        and nulls.get(field.field_id) == 0
        and field.field_id in lower
        and field.field_id in upper
    )


def expire_snapshots(table: Table, keep: int = KEEP_SNAPSHOTS) -> int:
    """Expire every snapshot of ``table`` but the newest ``keep``; return how many were expired."""
    ordered = sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0)
    current = table.metadata.current_snapshot_id
    old = [s.snapshot_id for s in ordered[:-keep] if s.snapshot_id != current]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def remove_unreachable_metadata(table: Table, metadata_files: Iterable[str]) -> list[str]:
    """Delete the manifest and manifest-list files (URIs) no snapshot of ``table`` references.

    They belong to expired snapshots or to commits that never happened (a killed writer). Only
    safe under the writer lock, like :meth:`IcebergLakeTable.clean_orphans`.
    """
    reachable = set()
    for snapshot in table.metadata.snapshots:
        reachable.add(snapshot.manifest_list)
        reachable.update(m.manifest_path for m in snapshot.manifests(table.io))
    removed = [uri for uri in metadata_files if uri.endswith(".avro") and uri not in reachable]
    for uri in removed:
        table.io.delete(uri)
    return removed


class IcebergLakeTable(LakeTable):
    """One lake table as an Iceberg table whose data files are our own Parquet files.

    Shares :class:`LakeTable`'s file layout (``absolute``, ``live_paths``, ``clean_orphans``);
    the published version is the current Iceberg snapshot instead of ``_manifest.json``.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        catalog_url: str,
        *,
        day_column: str | None = None,
        object_store: ObjectStore | None = None,
    ) -> None:
        super().__init__(root, name)
        self.catalog_url = catalog_url
        self.day_column = day_column
        self.object_store = object_store
        self._cache: tuple[str, Manifest] | None = None

    @property
    def identifier(self) -> str:
        return identifier(self.name)

    @property
    def location(self) -> str:
        """The table's Iceberg location: ``<lake uri>/<table>`` on object storage, else its dir."""
        if self.object_store is not None:
            return f"{self.object_store.uri}/{self.name}"
        return file_uri(self.dir)

    def uri(self, file: LakeFile | str) -> str:
        """The location of a data file as the Iceberg table lists it."""
        path = file.path if isinstance(file, LakeFile) else file
        return f"{self.location}/{path}"

    def catalog(self) -> SqlCatalog:
        warehouse = self.object_store.uri if self.object_store else file_uri(self.root)
        return catalog(self.catalog_url, warehouse, self.object_store)

    def load(self) -> Table | None:
        """The Iceberg table, or None when nothing was ever published."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            table = self.catalog().load_table(self.identifier)
        except NoSuchTableError:
            return None
        if table.location() != self.location:
            raise ValueError(
                f"the Iceberg catalog {self.catalog_url.split('@')[-1]} already holds "
                f"{self.identifier} at {table.location()}, not at {self.location}; give each "
                "lake its own catalog (SPEND_WAREHOUSE_ICEBERG_CATALOG_URL), or set "
                "SPEND_WAREHOUSE_LAKE_URI back to where this lake's tables are."
            )
        return table

    def relative(self, file_path: str) -> str:
        """A data file's path under the table directory (what :class:`LakeFile` holds)."""
        prefix = self.location + "/"
        if not file_path.startswith(prefix):
            raise ValueError(
                f"{self.identifier}: data file {file_path} is outside the table location "
                f"{self.location}; was the lake moved? Point the catalog at the moved files."
            )
        return file_path.removeprefix(prefix)

    def read_manifest(self) -> Manifest:
        """The current snapshot as a manifest (files, state), or an empty one before any commit."""
        table = self.load()
        if table is None:
            return Manifest()
        if self._cache is not None and self._cache[0] == table.metadata_location:
            return self._cache[1]
        manifest = self._manifest_of(table)
        self._fetch_missing(manifest)
        self._cache = (table.metadata_location, manifest)
        return manifest

    def _fetch_missing(self, manifest: Manifest) -> None:
        """Download the live files that have no local copy (object storage only)."""
        if self.object_store is None:
            return
        for file in manifest.files:
            if not self.absolute(file).exists():
                download(s3_filesystem(self.object_store), self.uri(file), self.absolute(file))

    def _manifest_of(self, table: Table, live: list[DataFile] | None = None) -> Manifest:
        """The manifest of ``table``'s current snapshot (``live``: its data files, if read)."""
        snapshot = table.current_snapshot()
        if snapshot is None:
            return Manifest()
        files = []
        schema = table.schema()
        for data_file in live_data_files(table) if live is None else live:
            path = self.relative(data_file.file_path)
            size = data_file.file_size_in_bytes
            bounds = timestamp_bounds(schema, data_file)
            files.append(LakeFile(path, data_file.record_count, size, partition_of(path), bounds))
        return Manifest(
            version=snapshot.sequence_number or 0,
            files=tuple(sorted(files, key=lambda f: f.path)),
            state=state_of(snapshot.summary),
            published_at=datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(),
        )

    def publish(
        self,
        *,
        add: Iterable[LakeFile] = (),
        remove: Iterable[str] = (),
        state: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Commit ``add`` files, drop ``remove`` paths and set ``state`` in ONE Iceberg snapshot.

        Call only after every added file is durable; the catalog's swap of the metadata pointer
        is the commit point of the data and the state together. On object storage the added
        files are uploaded first (a kill before the commit leaves orphan objects, never a
        snapshot listing a missing file) and the removed ones deleted from it after the commit.
        """
        from pyiceberg.io.pyarrow import parquet_file_to_data_file

        table = self.load() or self._create()
        live = live_data_files(table)
        current = self._manifest_of(table, live)
        known = {f.path for f in current.files}
        added = [f for f in add if f.path not in known]
        removed = set(remove)
        new_state = dict(current.state if state is None else state)
        properties = {STATE_PROPERTY: json.dumps(new_state, sort_keys=True)}
        tx = table.transaction()
        schemas: list[pa.Schema] = []
        for file in added:
            if (schema := pq.read_schema(self.absolute(file))) not in schemas:
                schemas.append(schema)
                self._conform(tx, schema)
        doomed = [f for f in live if self.relative(f.file_path) in removed]
        self._upload(added)
        pause_point("before_commit", self.name)
        update = tx.update_snapshot(snapshot_properties=properties)
        producer = update.overwrite() if doomed else update.fast_append()
        with producer:
            for data_file in doomed:
                producer.delete_data_file(data_file)
            for file in added:
                producer.append_data_file(
                    parquet_file_to_data_file(table.io, tx.table_metadata, self.uri(file))
                )
        committed = tx.commit_transaction()
        if self.object_store is not None:
            for data_file in doomed:
                committed.io.delete(data_file.file_path)
        if len(committed.metadata.snapshots) >= EXPIRE_AT:  # between two daily maintenances
            self.expire_snapshots()
        return self.read_manifest()

    def _upload(self, files: Iterable[LakeFile]) -> None:
        """Upload the local copies of ``files`` to the table location (object storage only)."""
        if self.object_store is None:
            return
        fs = s3_filesystem(self.object_store)
        for file in files:
            upload(fs, self.absolute(file), self.uri(file))

    def _metadata_files(self) -> list[str]:
        """The URIs of the files under the table's ``metadata/``."""
        if self.object_store is not None:
            fs = s3_filesystem(self.object_store)
            return list_objects(fs, f"{self.location}/{METADATA_DIR}")
        return [file_uri(path) for path in (self.dir / METADATA_DIR).glob("*")]

    def _create(self) -> Table:
        """Create the (empty, schemaless) Iceberg table at the table directory.

        On object storage the location must be empty: objects there belong to another lake (or
        catalog), and :meth:`clean_remote_orphans` would delete them as orphans.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.object_store is not None and (
            found := list_objects(s3_filesystem(self.object_store), self.location)
        ):
            raise ValueError(
                f"{self.location} already holds {len(found)} objects of a table this catalog "
                "does not know (another lake's, or an earlier catalog's); give each lake its own "
                "prefix (SPEND_WAREHOUSE_LAKE_URI), or delete those objects."
            )
        return self.catalog().create_table_if_not_exists(
            self.identifier,
            schema=pa.schema([]),
            location=self.location,
            properties={**TABLE_PROPERTIES, LAKE_TABLE_PROPERTY: self.name},
        )

    def _conform(self, tx: Transaction, schema: pa.Schema) -> None:
        """Stage in ``tx``: new columns of ``schema``, the day partition, the name mapping."""
        from pyiceberg.table import TableProperties
        from pyiceberg.transforms import DayTransform

        before = tx.table_metadata.schema()
        with tx.update_schema() as update:
            update.union_by_name(schema)
        after = tx.table_metadata.schema()
        if (
            self.day_column
            and tx.table_metadata.spec().is_unpartitioned()
            and self.day_column in after.column_names
        ):
            with tx.update_spec() as spec:
                spec.add_field(self.day_column, DayTransform(), DAY_FIELD)
        if after != before or tx.table_metadata.name_mapping() is None:
            tx.set_properties(
                **{TableProperties.DEFAULT_NAME_MAPPING: after.name_mapping.model_dump_json()}
            )

    def expire_snapshots(self) -> int:
        """Expire all snapshots but the newest :data:`KEEP_SNAPSHOTS` and delete the manifest
        files no remaining snapshot references; return how many snapshots expired."""
        table = self.load()
        if table is None:
            return 0
        expired = expire_snapshots(table)
        remove_unreachable_metadata(table.refresh(), self._metadata_files())
        return expired

    def is_metadata(self, path: Path) -> bool:
        """Files under ``metadata/`` are Iceberg's: :meth:`clean_orphans` never touches them."""
        return path.is_relative_to(self.dir / METADATA_DIR)

    def clean_orphans(self) -> list[Path]:
        """Delete the local orphans (returned) and, on object storage, the orphan objects.

        Only safe under the writer lock, like :meth:`LakeTable.clean_orphans`.
        """
        removed = super().clean_orphans()
        self.clean_remote_orphans()
        return removed

    def clean_remote_orphans(self) -> list[str]:
        """Delete the ``.parquet`` objects under the table location the snapshot does not list.

        They were uploaded by a run killed before its commit, or replaced by a commit whose
        run was killed before deleting them. Never an object under ``metadata/``.
        """
        if self.object_store is None or self.load() is None:
            return []
        live = {self.uri(f) for f in self.read_manifest().files}
        metadata = f"{self.location}/{METADATA_DIR}/"
        doomed = [
            uri
            for uri in list_objects(s3_filesystem(self.object_store), self.location)
            if uri.endswith(".parquet") and uri not in live and not uri.startswith(metadata)
        ]
        fs = s3_filesystem(self.object_store)
        for uri in doomed:
            fs.delete_file(object_path(uri))
        return doomed


def lake_table_names(catalog_url: str, root: Path, store: ObjectStore | None = None) -> list[str]:
    """The lake path of every Iceberg table of the namespace (e.g. ``snapshots/users``)."""
    found = catalog(catalog_url, store.uri if store else file_uri(root), store)
    names = []
    for ident in found.list_tables(NAMESPACE):
        table = found.load_table(ident)
        names.append(table.properties.get(LAKE_TABLE_PROPERTY) or ident[-1].replace("__", "/"))
    return sorted(names)
