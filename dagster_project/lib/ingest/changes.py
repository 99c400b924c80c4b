"""Reusing a passing reconciliation while neither the source table nor the lake table changed.

The reconciliation check compares the last days of a fact table in full, source against lake:
at 10 M spend logs about a million rows of count, spend and id fingerprint on each side, some
2.5 s of every run, also of the runs that find nothing new. Its result depends only on the two
tables and on which rows it compares; when neither table changed, it still holds.

The lake side is known exactly: its manifest (version, live files, extraction state). The
source side is told by a **change marker** read from PostgreSQL's cumulative statistics: for the
table and every partition or child under it, the oid, the relfilenode (a new one after
``TRUNCATE``) and the counts of inserted, updated and deleted rows, together with the server's
start time and the database's statistics reset time (the counts restart from zero after either).
Any write to the table moves the marker once PostgreSQL has flushed the writing session's
statistics (normally before its commit returns, at most a minute later under contention).

The marker is read in its own transaction *before* the session's snapshot: a write that the
comparison's snapshot did not see is not in the recorded marker either, so it moves the marker
of a later run and that run compares again. Where the statistics do not follow every write the
marker is unusable and every run compares in full:

- a standby (``pg_is_in_recovery()``): replayed writes are not counted;
- ``track_counts`` off;
- PostgreSQL before 15 (the statistics collector could drop messages);
- a view, a foreign table or a materialized view in place of the table or any partition.

Even with a usable marker, a comparison older than ``max_age`` is not reused: the check compares
in full at that interval whatever the statistics say.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from dagster_project.lib.ingest.lake import Manifest, atomic_write_bytes

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
# The last passing comparison
# ---------------------------------------------------------------------------------------------


def comparison_key(
    marker: ChangeMarker,
    manifest: Manifest,
    *,
    columns: Sequence[str],
    first_day: date,
    days: int,
) -> str | None:
    """What a comparison's result depends on: the source's marker and columns (an ``ALTER
    TABLE`` moves no write count), the lake table's manifest and the compared days; None when
    the marker is unusable (never reuse)."""
    if not marker.usable:
        return None
    text = json.dumps(
        {
            "source": marker.digest,
            "columns": list(columns),
            "lake": manifest.to_json(),
            "first_day": first_day.isoformat(),
            "days": days,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def record_path(state_dir: Path, raw_table: str) -> Path:
    return state_dir / "reconciled" / f"{raw_table}.json"


def save_comparison(
    state_dir: Path,
    raw_table: str,
    key: str,
    compared_at: datetime,
    metadata: Mapping[str, Any],
) -> None:
    """Record a passing comparison (atomically: a reader sees the old record or the new)."""
    record = {"key": key, "compared_at": compared_at.isoformat(), "metadata": dict(metadata)}
    atomic_write_bytes(record_path(state_dir, raw_table), json.dumps(record, default=str).encode())


def forget_comparison(state_dir: Path, raw_table: str) -> None:
    """A comparison failed: nothing recorded may stand in for the next one."""
    record_path(state_dir, raw_table).unlink(missing_ok=True)


def reusable_comparison(
    state_dir: Path,
    raw_table: str,
    key: str | None,
    *,
    now: datetime,
    max_age: timedelta,
) -> dict[str, Any] | None:
    """The recorded passing comparison when it still holds: the same key, younger than
    ``max_age``; None otherwise (also for a missing or garbled record: one more comparison)."""
    if key is None or max_age <= timedelta(0):
        return None
    try:
        record = json.loads(record_path(state_dir, raw_table).read_text(encoding="utf-8"))
        compared_at = datetime.fromisoformat(record["compared_at"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if record.get("key") != key or not timedelta(0) <= now - compared_at < max_age:
        return None
    return record
