"""``spendwh check``: validate the configuration, the proxy database and the warehouse."""

from __future__ import annotations

import argparse
from pathlib import Path

from dagster_project.lib.demo import no_source_message
from dagster_project.lib.ingest.changes import MARKER_SQL, ChangeMarker, change_marker
from dagster_project.lib.ingest.windows import LEADING_INDEX_SQL, created_at_index_sql
from dagster_project.lib.postgres import SPEND_LOGS, connect, inspect_source, redact
from dagster_project.lib.sql import quote_ident, table_name
from dagster_project.settings import CELERY, ConfigError, Settings, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate configuration, the connection to the proxy database and the warehouse",
    )
    parser.set_defaults(func=run)


def warehouse_rows(path: Path) -> int | None:
    """Spend logs in the published warehouse at ``path`` (None: not built); in use raises."""
    if not path.exists():
        return None
    from dagster_project.lib.duckdb import connect_reader

    with connect_reader(path) as conn:
        found = conn.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE schema_name = 'raw' AND table_name = 'spend_logs'"
        ).fetchone()[0]
        return conn.execute("SELECT count(*) FROM raw.spend_logs").fetchone()[0] if found else 0


def warehouse_state(path: Path, rows: int | None) -> str:
    """What the published warehouse at ``path`` holds."""
    if rows is None:
        return f"{path} not built yet ('spendwh run' builds it)"
    return f"{path}, {rows:,} spend logs"


def quiet_run_report(marker: ChangeMarker, created_at_cursor: bool, minutes: int) -> str:
    """What a run with nothing new skips on this source (lib/ingest/changes.py)."""
    if minutes == 0:
        return (
            "quiet runs: read and compare SpendLogs in full every time "
            "(SPEND_WAREHOUSE_UNCHANGED_MINUTES=0)"
        )
    if not marker.usable:
        return (
            f"quiet runs: read and compare SpendLogs in full every time: {marker.reason}, so "
            "PostgreSQL's write counts cannot tell that nothing changed"
        )
    skipped = (
        "skip the read and reuse the last passing reconciliation"
        if created_at_cursor
        else "reuse the last passing reconciliation (the startTime cursor is read every time)"
    )
    return (
        f"quiet runs: while PostgreSQL's write counts and the lake are unchanged, runs {skipped}, "
        f"for up to {minutes} minutes after the last full one (SPEND_WAREHOUSE_UNCHANGED_MINUTES)"
    )


def spend_log_report(
    url: str, prefix: str, warehouse_rows: int | None, unchanged_minutes: int
) -> list[str]:
    """How SpendLogs is read (cursor, the created_at index, what quiet runs skip) and whether
    logging looks disabled."""
    table = table_name(prefix, SPEND_LOGS)
    with connect(url) as conn:
        has_created_at = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s AND column_name = 'created_at')",
            (table,),
        ).fetchone()[0]
        indexed = (
            has_created_at
            and conn.execute(
                LEADING_INDEX_SQL.replace("$1", "%s").replace("$2", "%s"),
                (quote_ident(table), "created_at"),
            ).fetchone()[0]
        )
        marker = change_marker(
            conn.execute(MARKER_SQL.replace("$1", "%s"), (quote_ident(table),)).fetchone()
        )
        exists = f"SELECT EXISTS (SELECT 1 FROM {quote_ident(table)})"
        empty = not conn.execute(exists).fetchone()[0]
    if not has_created_at:
        lines = [
            "cursor: startTime (no created_at column: an older proxy); rows later than the "
            "look-back are found by the reconciliation check and re-read by the daily rollback"
        ]
    elif indexed:
        lines = [
            "cursor: created_at, index leading with created_at present: every new row is read "
            "at the next run, whatever its startTime"
        ]
    else:
        lines = [
            "cursor: created_at, no index leading with created_at: rows inserted with a "
            "startTime older than the extraction's horizon (7 days) fail the reconciliation "
            "check until the daily rollback reads them; to read them at the next run, a DBA "
            "can run (the warehouse never writes to the proxy):",
            "  " + created_at_index_sql(prefix),
        ]
    lines.append(quiet_run_report(marker, has_created_at, unchanged_minutes))
    if empty and warehouse_rows:
        lines.append(
            f"status: source disabled: {table!r} is empty while the warehouse holds "
            f"{warehouse_rows:,} spend logs (disable_spend_logs, or the table was emptied); the "
            "warehouse keeps its history and reports spend since then as unknown, not zero"
        )
    elif empty:
        lines.append(
            f"status: {table!r} is empty: a new proxy, or spend logs are disabled "
            "(disable_spend_logs)"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.database_url is None:
        raise ConfigError(no_source_message(settings))
    url, prefix = settings.database_url, settings.table_prefix
    info = inspect_source(url, prefix)
    if not info.has(prefix, SPEND_LOGS):
        raise ConfigError(
            f"{redact(url)} has proxy tables named {prefix!r}<Name> but no "
            f"{table_name(prefix, SPEND_LOGS)!r}; run the proxy's database migrations there, "
            "or point DATABASE_URL at the proxy's own database."
        )
    print(
        f"ok: {redact(url)} (PostgreSQL {info.server_version}), prefix {prefix!r}, "
        "SpendLogs present"
    )
    rows = warehouse_rows(settings.warehouse_path)
    for line in spend_log_report(url, prefix, rows, settings.unchanged_minutes):
        print(line)
    print(f"warehouse: {warehouse_state(settings.warehouse_path, rows)}")
    print(executor_report(settings))
    return 0


def executor_report(settings: Settings) -> str:
    """Where launched runs execute their steps; with Celery, that the broker and backend answer."""
    executor = settings.executor
    if executor.name != CELERY:
        return f"executor: {executor.name} (steps run in the run's own processes)"
    from dagster_project.lib.workers import check_celery_services

    check_celery_services(executor)
    return (
        f"executor: celery, steps to queue {executor.celery_queue} of "
        f"{redact(str(executor.celery_broker_url))} (answers), results in "
        f"{redact(str(executor.celery_backend_url))} (answers); start workers with "
        "'spendwh worker'"
    )
