"""The history of every budget limit: a version each time a budget-bearing row's limits change.

The proxy keeps only the current limits on its rows (and, with audit logging on, an audit row
per change). The warehouse keeps their history itself, so a budget period can be evaluated
against the limit in force when each request was made, and so a deleted budget row's limits
are not forgotten. After each entity snapshot, the limit columns of every budget-bearing row of
``raw.*`` are compared with the latest version the lake holds for that row:

- a row seen for the first time gets a version valid since ever (``valid_from`` null: what was
  in force before the first snapshot is unknown, so its current limits are the best evidence);
- a row whose limits changed gets a version valid from its ``updated_at`` when that is after the
  previous version's start (the proxy stamps the change), else from the snapshot time;
- a row that disappeared gets a tombstone (``is_deleted``), valid from the snapshot time.

Versions are appended to the lake table ``snapshots/budget_limit_history`` (one file per run
that found a change, published atomically with the manifest) and ``raw.budget_limit_history``
is rebuilt from every file. The comparison reads the lake, not ``raw``, so a run killed between
the publish and the rebuild does not store a version twice. Only the limit columns are compared:
a spend counter moving does not make a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from dagster_project.lib.ingest import load as raw_load
from dagster_project.lib.ingest.lake import Lake, write_single_file
from dagster_project.lib.sql import quote_ident

HISTORY_TABLE = "budget_limit_history"

# raw table -> (the row's id expression, its limit columns). Keys, teams and users carry their
# own limits; budget rows theirs; the other holders only link a budget row.
LIMIT_COLUMNS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "verification_tokens": (
        "token",
        ("max_budget", "budget_duration", "budget_id", "model_max_budget", "budget_limits"),
    ),
    "teams": (
        "team_id",
        ("max_budget", "soft_budget", "budget_duration", "model_max_budget", "budget_limits"),
    ),
    "users": (
        "user_id",
        ("max_budget", "budget_duration", "model_max_budget", "budget_limits"),
    ),
    "budgets": ("budget_id", ("max_budget", "soft_budget", "budget_duration", "model_max_budget")),
    "organizations": ("organization_id", ("budget_id",)),
    "end_users": ("user_id", ("budget_id",)),
    "team_memberships": ("team_id || '/' || user_id", ("budget_id",)),
    "tags": ("tag_name", ("budget_id",)),
    "projects": ("project_id", ("budget_id",)),
}

HISTORY_SCHEMA = pa.schema(
    [
        ("version_id", pa.string()),
        ("source_table", pa.string()),
        ("entity_id", pa.string()),
        ("limits_json", pa.string()),
        ("is_deleted", pa.bool_()),
        ("valid_from", pa.timestamp("us")),
        ("observed_at", pa.timestamp("us")),
    ]
)


@dataclass(frozen=True)
class HistoryResult:
    """What one pass stored: new versions (tombstones among them) and the rows now held."""

    versions: int
    tombstones: int
    rows: int


_NO_ROWS = (
    "SELECT NULL::VARCHAR AS source_table, NULL::VARCHAR AS entity_id, "
    "NULL::VARCHAR AS limits_json, NULL::TIMESTAMP AS updated_at WHERE false"
)


def _current_sql(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    """One SELECT of (source_table, entity_id, limits_json, updated_at) over the budget-bearing
    raw ``tables``; a missing column reads as null (older proxies)."""
    parts = []
    for table in tables:
        id_expr, columns = LIMIT_COLUMNS[table]
        present = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'raw' AND table_name = ?",
                [table],
            ).fetchall()
        }
        members = ", ".join(
            f"{quote_ident(c)}: {quote_ident(c) if c in present else 'NULL'}" for c in columns
        )
        updated = quote_ident("updated_at") if "updated_at" in present else "NULL"
        parts.append(
            f"SELECT '{table}' AS source_table, CAST({id_expr} AS VARCHAR) AS entity_id, "
            f"CAST(to_json({{{members}}}) AS VARCHAR) AS limits_json, "
            f"CAST({updated} AS TIMESTAMP) AS updated_at FROM {raw_load.qualified(table)}"
        )
    return " UNION ALL ".join(parts) or _NO_ROWS


def record_limit_history(
    con: duckdb.DuckDBPyConnection, lake: Lake, observed_at: datetime
) -> HistoryResult:
    """Append the limit versions the current ``raw`` snapshots add to the history (see module)."""
    tables = [t for t in LIMIT_COLUMNS if raw_load.table_exists(con, t)]
    current = _current_sql(con, tables)
    present = ", ".join(f"'{t}'" for t in tables) or "NULL"
    table = lake.table(f"snapshots/{HISTORY_TABLE}")
    paths = [str(p) for p in table.live_paths()]
    known = (
        "SELECT * FROM read_parquet(?, hive_partitioning = false) "
        "QUALIFY row_number() OVER (PARTITION BY source_table, entity_id "
        "ORDER BY valid_from DESC NULLS LAST, observed_at DESC) = 1"
        if paths
        else "SELECT * FROM (SELECT NULL::VARCHAR AS source_table, NULL::VARCHAR AS entity_id, "
        "NULL::VARCHAR AS limits_json, NULL::BOOLEAN AS is_deleted, "
        "NULL::TIMESTAMP AS valid_from) WHERE false"
    )
    params: list = [paths] if paths else []
    changed_sql = f"""
        WITH latest AS ({known}),
        current AS ({current}),
        seen AS (
            SELECT
                c.source_table, c.entity_id, c.limits_json, false AS is_deleted,
                CASE
                    WHEN l.entity_id IS NULL THEN NULL
                    WHEN c.updated_at IS NOT NULL AND c.updated_at <= ?
                        AND (l.valid_from IS NULL OR c.updated_at > l.valid_from)
                        THEN c.updated_at
                    ELSE ?::TIMESTAMP
                END AS valid_from
            FROM current AS c
            LEFT JOIN latest AS l USING (source_table, entity_id)
            WHERE c.entity_id IS NOT NULL
              AND (l.entity_id IS NULL OR l.is_deleted OR l.limits_json <> c.limits_json)
        ),
        gone AS (
            SELECT l.source_table, l.entity_id, NULL::VARCHAR AS limits_json, true AS is_deleted,
                   ?::TIMESTAMP AS valid_from
            FROM latest AS l
            ANTI JOIN current AS c USING (source_table, entity_id)
            WHERE NOT l.is_deleted
              AND l.source_table IN ({present})
        )
        SELECT
            md5(concat_ws('|', source_table, entity_id, coalesce(limits_json, '<deleted>'),
                          coalesce(CAST(valid_from AS VARCHAR), '<since ever>'))) AS version_id,
            source_table, entity_id, limits_json, is_deleted, valid_from,
            ?::TIMESTAMP AS observed_at
        FROM (SELECT * FROM seen UNION ALL SELECT * FROM gone)
        ORDER BY source_table, entity_id
    """
    at = observed_at.replace(tzinfo=None)
    versions = con.sql(changed_sql, params=[*params, at, at, at, at]).to_arrow_table()
    versions = versions.cast(HISTORY_SCHEMA)
    tombstones = sum(versions.column("is_deleted").to_pylist())
    first = not table.read_manifest().files
    if versions.num_rows or first:  # the first run stores a file even when empty: the columns
        table.publish(
            add=[write_single_file(table, versions)], state={"observed_at": at.isoformat()}
        )
    if versions.num_rows or first or not raw_load.table_exists(con, HISTORY_TABLE):
        raw_load.rebuild_snapshot(con, HISTORY_TABLE, table, "version_id", "observed_at")
    return HistoryResult(versions.num_rows, tombstones, raw_load.row_count(con, HISTORY_TABLE))
