"""Helpers for the extraction tests: plain-SQL rows in the source, one-call extraction."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest.extract import FactResult, extract_fact
from dagster_project.lib.ingest.lake import PAUSE_ENV, PAUSE_FILE_ENV, Lake
from dagster_project.lib.ingest.source import ERROR_LOGS, SPEND_LOGS, SourceSession
from dagster_project.lib.ingest.windows import WindowOptions
from dagster_project.lib.times import utcnow
from dagster_project.settings import ICEBERG, PARQUET, ObjectStore
from devinfra.s3server import S3Server

__all__ = ["Warehouse", "insert_spend", "kill_at_pause_point", "ms", "spend_row", "utcnow"]

# The lake format of a Warehouse made without one; the ``lake_format`` fixture
# (tests/ingest/conftest.py) sets it, so a module's tests run once per format.
LAKE_FORMAT = PARQUET
# With iceberg: the S3 server the tables of a Warehouse made without an object store go to (the
# ``lake_variant`` fixture sets it), each Warehouse under its own prefix of the bucket.
S3: S3Server | None = None


def ms(value: datetime) -> datetime:
    """``value`` truncated to milliseconds (what a TIMESTAMP(3) column stores exactly)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def spend_row(
    request_id: str,
    start: datetime,
    *,
    spend: float = 0.01,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
    metadata: dict | None = None,
    **extra: object,
) -> dict:
    """A SpendLogs row with sensible defaults (NOT NULL columns filled)."""
    row = {
        "request_id": request_id,
        "call_type": "acompletion",
        "spend": spend,
        "startTime": start,
        "endTime": start + timedelta(seconds=2),
        "model": "gpt-4o-mini",
        "metadata": json.dumps(metadata if metadata is not None else {"user_api_key_alias": "a"}),
        "team_id": "team-1",
        "end_user": "",
        "status": "success",
    }
    if created_at is not None:
        row["created_at"] = created_at
    if updated_at is not None:
        row["updated_at"] = updated_at
    row.update(extra)
    return row


def insert_spend(source, rows: Iterable[dict]) -> None:
    """Insert SpendLogs rows with plain SQL (one transaction)."""
    with source.connect() as conn:
        for row in rows:
            if source.until is not None:  # older schemas: only the columns they have
                row = {k: v for k, v in row.items() if k not in {"created_at", "updated_at"}}
            cols = ", ".join('"' + c + '"' for c in row)
            marks = ", ".join(["%s"] * len(row))
            conn.execute(
                f"INSERT INTO {source.table('SpendLogs')} ({cols}) VALUES ({marks})",
                list(row.values()),
            )


@dataclass
class Warehouse:
    """A warehouse directory the tests extract into (lake + build DuckDB)."""

    root: Path
    lake_format: str = field(default_factory=lambda: LAKE_FORMAT)
    catalog_url: str | None = None  # iceberg only; None: the SQLite file in the lake
    object_store: ObjectStore | None = None  # iceberg only; None: the tables on local disk

    def __post_init__(self) -> None:
        if self.object_store is None and S3 is not None and self.lake_format == ICEBERG:
            digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()
            self.object_store = S3.store(f"wh-{digest[:16]}")  # one prefix per directory

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def store(self) -> Lake:
        """The lake in this warehouse's format (its tables: ``store.table(name)``)."""
        return Lake(self.lake, self.lake_format, self.catalog_url, self.object_store)

    @property
    def build(self) -> Path:
        return self.root / "state" / "build.duckdb"

    def extract(
        self,
        source,
        *,
        options: WindowOptions = WindowOptions(),  # noqa: B008
        include_payload: bool = False,
        rollback_days: int = 0,
        maintenance: bool = False,
        url: str | None = None,
        fact=SPEND_LOGS,
    ) -> FactResult:
        """One extraction of ``fact`` from ``source`` (as the asset runs it)."""
        with (
            SourceSession(url or source.url, source.prefix) as session,
            connect_writer(self.build, recover_corrupt=True) as con,
        ):
            return extract_fact(
                session,
                con,
                self.store,
                fact,
                options=options,
                include_payload=include_payload,
                rollback_days=rollback_days,
                maintenance=maintenance,
            )

    def extract_errors(self, source) -> FactResult:
        return self.extract(source, fact=ERROR_LOGS)

    def rows(self, table: str = "spend_logs") -> list[tuple]:
        """Content of ``raw.<table>`` without load metadata, ordered by request_id."""
        con = duckdb.connect(str(self.build), read_only=True)
        try:
            return con.execute(
                f"SELECT * EXCLUDE (_extracted_at, _batch_id) FROM raw.{table} ORDER BY request_id"
            ).fetchall()
        finally:
            con.close()

    def query(self, sql: str) -> list[tuple]:
        con = duckdb.connect(str(self.build), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def manifest(self, table: str = "spend_logs"):
        return self.store.table(table).read_manifest()

    def lake_rows(self, sql: str, table: str = "spend_logs") -> list[tuple]:
        """``sql`` over the live files of the lake table (``FROM lake``), as another reader
        sees the table."""
        published = self.store.table(table)
        paths = [str(published.absolute(f)) for f in published.read_manifest().files]
        con = duckdb.connect()
        try:
            con.execute(
                f"CREATE VIEW lake AS SELECT * FROM read_parquet({paths!r}, union_by_name = true)"
            )
            return con.execute(sql).fetchall()
        finally:
            con.close()


def kill_at_pause_point(
    command: list[str],
    env: Mapping[str, str],
    cwd: Path,
    stage: str,
    marker: Path,
    timeout: float = 60,
) -> None:
    """Start ``command`` with the pause point ``stage`` armed (``<stage>:<table>`` for one
    table's), wait until it blocks there (it writes ``marker``), then SIGKILL it."""
    env = {**env, PAUSE_ENV: stage, PAUSE_FILE_ENV: str(marker)}
    log = marker.with_name(f"{marker.name}.log")  # a file: a pipe could fill and block it
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                output = log.read_text()[-3000:]
                raise AssertionError(f"{command[0]} ended before {stage}: {output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{command[0]} never reached {stage}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
