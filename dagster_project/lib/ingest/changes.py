"""Work that stands while neither the source table nor the lake table changed.

Two parts of every run repeat themselves on a quiet proxy:

- the reconciliation check compares the last days of a fact table in full, source against lake:
  at 10 M spend logs about a million rows of count, spend and id fingerprint on each side, some
  2.5 s of every run;
- without an index on ``created_at``, the incremental read proves that no row is new by scanning
  the last 7 days of the ``startTime`` index: 2.4 s at 10 M rows.

Both results depend only on the two tables and on the work's own inputs; when neither table
changed, they still hold, and a record of the last one (``state/<kind>/<table>.json``) stands in.

The lake side is known exactly: its manifest (version, live files, extraction state). The
source side is told by a **change marker** read from PostgreSQL's cumulative statistics: for the
table and every partition or child under it, the oid, the relfilenode (a new one after
``TRUNCATE``) and the counts of inserted, updated and deleted rows, together with the server's
start time and the database's statistics reset time (the counts restart from zero after either).
Any write to the table moves the marker once the writing session has flushed its statistics:
when it goes idle after the commit, or, if it flushed less than a second before, when it has been
idle for 10 s (``PGSTAT_IDLE_INTERVAL``). A run in those seconds sees the old marker and skips as
if the write came after it; the next run reads and compares it. No row is lost or counted twice,
but a row committed in the last 10 s before a quiet run may wait for the next one.

The marker is read in its own transaction *before* the session's snapshot: a write that the
comparison's snapshot did not see is not in the recorded marker either, so it moves the marker
of a later run and that run compares again. Where the statistics do not follow every write the
marker is unusable and every run compares in full:

- a standby (``pg_is_in_recovery()``): replayed writes are not counted;
- ``track_counts`` off;
- PostgreSQL before 15 (the statistics collector could drop messages);
- a view, a foreign table or a materialized view in place of the table or any partition.

Even with a usable marker, a record older than ``max_age`` does not stand: the work is done again
at that interval whatever the statistics say.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dagster_project.lib.ingest.lake import Manifest, atomic_write_bytes
from dagster_project.settings import Settings

MIN_SERVER_VERSION = 150000
TABLE_KINDS = frozenset({"r", "p"})  # a table, a partitioned table

# $1: the quoted table name. One row; its last columns are null when the table is absent.
MARKER_SQL = """
WITH RECURSIVE tree (relid) AS (
    SELECT to_regclass($1)::oid
    UNION
    SELECT pg_inherits.inhrelid
    FROM pg_inherits
    INNER JOIN tree ON pg_inherits.inhparent = tree.relid
)
SELECT
    current_setting('server_version_num')::int AS server_version,
    pg_is_in_recovery() AS in_recovery,
    current_setting('track_counts') AS track_counts,
    pg_postmaster_start_time()::text AS started_at,
    (
        SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()
    ) AS stats_reset,
    current_database()::text AS database,
    string_agg(
        concat_ws(
            ':', pg_class.oid, pg_class.relkind, pg_class.relfilenode,
            stats.n_tup_ins, stats.n_tup_upd, stats.n_tup_del
        ),
        ',' ORDER BY pg_class.oid
    ) AS tables,
    string_agg(DISTINCT pg_class.relkind::text, '') AS kinds,
    count(pg_class.oid) AS relations,
    count(stats.relid) AS counted
FROM tree
INNER JOIN pg_class ON tree.relid = pg_class.oid
LEFT JOIN pg_stat_all_tables AS stats ON pg_class.oid = stats.relid
"""


@dataclass(frozen=True)
class ChangeMarker:
    """The source table's change marker, or why it has none (``digest`` None)."""

    digest: str | None
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.digest is not None


def change_marker(row: Sequence[Any]) -> ChangeMarker:
    """The marker of one :data:`MARKER_SQL` row."""
    version, in_recovery, track_counts, started_at, reset, database, tables, kinds, n, counted = row
    if int(version) < MIN_SERVER_VERSION:
        return ChangeMarker(None, "PostgreSQL before 15 may drop table statistics")
    if in_recovery:
        return ChangeMarker(None, "a standby does not count the writes it replays")
    if str(track_counts).lower() not in {"on", "true"}:
        return ChangeMarker(None, "track_counts is off")
    if not n:
        return ChangeMarker(None, "the table is absent")
    if set(kinds or "") - TABLE_KINDS:
        return ChangeMarker(None, "a view, foreign or materialized table has no write counts")
    if counted != n:
        return ChangeMarker(None, "a partition has no statistics")
    text = json.dumps([started_at, reset, database, tables])
    return ChangeMarker(hashlib.sha256(text.encode()).hexdigest())


# ---------------------------------------------------------------------------------------------
# Records of work that stands while nothing changed
# ---------------------------------------------------------------------------------------------

READ = "read"  # an incremental read that left the lake table complete
COMPARED = "reconciled"  # a passing reconciliation


@dataclass(frozen=True)
class Unchanged:
    """Where the records live and how long one stands (``max_age`` zero: never)."""

    state_dir: Path
    max_age: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Unchanged:
        return cls(settings.state_dir, timedelta(minutes=settings.unchanged_minutes))


def unchanged_key(marker: ChangeMarker, manifest: Manifest, **inputs: Any) -> str | None:
    """What a piece of work's result depends on: the source table's marker, the lake table's
    manifest and the work's own ``inputs`` (JSON values: columns, window options, days); None
    when the marker is unusable (never reuse)."""
    if not marker.usable:
        return None
    text = json.dumps(
        {"source": marker.digest, "lake": manifest.to_json(), **inputs},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def record_path(state_dir: Path, kind: str, raw_table: str) -> Path:
    return state_dir / kind / f"{raw_table}.json"


def save_record(
    unchanged: Unchanged,
    kind: str,
    raw_table: str,
    key: str,
    at: datetime,
    metadata: Mapping[str, Any],
) -> None:
    """Record work done at ``at`` (atomically: a reader sees the old record or the new)."""
    record = {"key": key, "at": at.isoformat(), "metadata": dict(metadata)}
    path = record_path(unchanged.state_dir, kind, raw_table)
    atomic_write_bytes(path, json.dumps(record, default=str).encode())


def forget_record(unchanged: Unchanged, kind: str, raw_table: str) -> None:
    """Nothing recorded may stand in for the next piece of work (it failed)."""
    record_path(unchanged.state_dir, kind, raw_table).unlink(missing_ok=True)


def reusable_record(
    unchanged: Unchanged, kind: str, raw_table: str, key: str | None, *, now: datetime
) -> dict[str, Any] | None:
    """The record when it still stands: the same key, younger than the maximum age; None
    otherwise (also for a missing or garbled record: the work is done once more)."""
    if key is None or unchanged.max_age <= timedelta(0):
        return None
    try:
        path = record_path(unchanged.state_dir, kind, raw_table)
        record = json.loads(path.read_text(encoding="utf-8"))
        at = datetime.fromisoformat(record["at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if record.get("key") != key or not timedelta(0) <= now - at < unchanged.max_age:
        return None
    return record
