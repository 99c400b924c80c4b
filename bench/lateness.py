"""What losslessness at any lateness costs: runs with nothing new, reconciliation, rollback.

``python -m bench.lateness [--rows N]`` builds a proxy database of N spend-log rows over 30 days
(bulk ``INSERT ... SELECT generate_series``, rows of about 0.5 KB, far smaller than real ones),
then measures, without and with an index leading with ``created_at``:

- a run with nothing new: seconds, rows read, and the rows the source touches for its window
  (``EXPLAIN (ANALYZE, BUFFERS)`` of the same predicate);
- the reconciliation check (recent days in full, every older day by count and ids);
- a row inserted now with a 30-day-old ``startTime``: what the check says, and the rollback
  that finds and re-reads its day (the whole-history comparison);
- every row tied at one ``created_at`` (the migration instant): rows read by the second run.

Prints one line per figure. ``BENCH_DATABASE_URL`` names the server (default the local one).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psycopg

from dagster_project.defs.ingest.checks import reconcile
from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest.extract import extract_fact, parse_ts
from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.source import SPEND_LOGS, SourceSession
from dagster_project.lib.ingest.windows import WindowOptions, incremental_window
from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import DEFAULT_TABLE_PREFIX, Settings

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = DEFAULT_TABLE_PREFIX
TABLE = f'"{PREFIX}SpendLogs"'


def populate(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO {TABLE} (request_id, call_type, api_key, spend, "startTime", '
            '"endTime", model, "user", team_id, end_user, metadata, status, created_at, '
            "updated_at) "
            "SELECT 'req-' || g, 'acompletion', md5((g % 500)::text), random() / 100, st, "
            "st + interval '2 seconds', 'gpt-4o-mini', 'user-' || (g % 300), "
            "'team-' || (g % 40), '', "
            "jsonb_build_object('user_api_key_alias', 'alias-' || (g % 500), "
            "'pad', repeat('x', 300)), 'success', st + interval '10 seconds', "
            "st + interval '10 seconds' "
            "FROM (SELECT g, (now() AT TIME ZONE 'UTC') - interval '30 days' "
            f"+ g * (interval '30 days' / {rows}) - interval '1 minute' AS st "
            f"FROM generate_series(1, {rows}) AS g) AS s"
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def extract(url: str, root: Path, **kwargs):
    with (
        SourceSession(url, PREFIX) as session,
        connect_writer(
            root / "state" / "build.duckdb", recover_corrupt=True, limits=Settings().duckdb_config
        ) as con,
    ):
        began = time.monotonic()
        result = extract_fact(
            session, con, Lake(root / "lake"), SPEND_LOGS, progress=lambda m: None, **kwargs
        )
        return result, time.monotonic() - began


def window_scan(url: str, root: Path) -> str:
    """Rows and buffers the source touches for the next run's window."""
    state = Lake(root / "lake").table("spend_logs").read_manifest().state
    with SourceSession(url, PREFIX) as session:
        bounded = not session.has_leading_index("SpendLogs", "created_at")
        window = incremental_window(
            state["cursor"],
            parse_ts(state["watermark"]),
            session.cap,
            WindowOptions(),
            bounded=bounded,
            settled=parse_ts(state.get("settled")),
        )
        plan = session.query(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT request_id FROM {TABLE} "
            f"WHERE {window.where()}"
        )[0][0]
    top = json.loads(plan)[0]
    node = top["Plan"]
    scanned = _scanned(node)
    return (
        f"{node['Node Type']}, {scanned:,} rows examined, "
        f"{node.get('Shared Hit Blocks', 0) + node.get('Shared Read Blocks', 0):,} buffers, "
        f"{top['Execution Time']:.1f} ms"
    )


def _scanned(node: dict) -> int:
    """Rows the scans of a plan produced plus the ones their filters removed."""
    own = 0
    if "Scan" in node["Node Type"]:
        own = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        own += node.get("Rows Removed by Index Recheck", 0)
        own *= node.get("Actual Loops", 1)  # per-loop averages (parallel workers)
    return own + sum(_scanned(child) for child in node.get("Plans", []))


def report_check(label: str, url: str, settings: Settings) -> None:
    """Run the reconciliation check once and print its time and verdict."""
    with SourceSession(url, PREFIX) as session:
        began = time.monotonic()
        evaluation = reconcile(SPEND_LOGS, session, settings)
        seconds = time.monotonic() - began
    meta = evaluation.metadata
    print(
        f"{label}: {seconds:.2f} s, passed={evaluation.passed}, "
        f"{meta['history_days_compared'].value} older days compared by count, "
        f"mismatched days: {meta['mismatched_days'].value}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-tie", action="store_true", help="skip the tie phase (an UPDATE)")
    args = parser.parse_args()
    rows = args.rows
    name = f"spendwh_bench_lateness_{rows}"
    url = create_database(SERVER, name, drop=True)
    try:
        apply_migrations(url, PREFIX)
        began = time.monotonic()
        populate(url, rows)
        print(f"populated {rows:,} rows in {time.monotonic() - began:.1f} s")
        for indexed in (False, True):
            if indexed:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"CREATE INDEX CONCURRENTLY ON {TABLE} (created_at)")
                    conn.execute(f"DELETE FROM {TABLE} WHERE request_id = 'backlog'")
            label = "with created_at index" if indexed else "without created_at index"
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                settings = Settings(database_url=url, table_prefix=PREFIX, warehouse_dir=root)
                result, seconds = extract(url, root)
                print(f"[{label}] cold run: {seconds:.1f} s, {result.rows_read:,} rows read")
                result, seconds = extract(url, root)
                print(
                    f"[{label}] nothing new: {seconds:.2f} s, {result.rows_read:,} rows read; "
                    f"source window scan: {window_scan(url, root)}"
                )
                report_check(f"[{label}] reconciliation check", url, settings)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        f'INSERT INTO {TABLE} (request_id, call_type, spend, "startTime", '
                        "\"endTime\") VALUES ('backlog', 'acompletion', 3.0, "
                        "(now() AT TIME ZONE 'UTC') - interval '30 days' + interval '2 hours', "
                        "(now() AT TIME ZONE 'UTC') - interval '30 days' + interval '2 hours')"
                    )
                result, seconds = extract(url, root)
                print(
                    f"[{label}] next run after a 30-day-old row: {seconds:.2f} s, "
                    f"{result.rows_stored} stored"
                )
                report_check(f"[{label}] check", url, settings)
                result, seconds = extract(url, root, rollback_days=3)
                print(
                    f"[{label}] rollback (3 days + whole-history comparison): {seconds:.2f} s, "
                    f"{result.rows_read:,} rows read, {result.rows_stored} stored, repaired "
                    f"days: {', '.join(result.repaired_days) or 'none'}"
                )
                report_check(f"[{label}] check after the rollback", url, settings)
        if args.skip_tie:
            return
        # every row tied at one created_at (the migration instant, a day ago)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                f"UPDATE {TABLE} SET created_at = date_trunc('second', "
                "(now() AT TIME ZONE 'UTC') - interval '1 day')"
            )
            conn.execute(f"VACUUM ANALYZE {TABLE}")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            result, seconds = extract(url, root)
            print(f"[tie] first run: {seconds:.1f} s, {result.rows_read:,} rows read")
            result, seconds = extract(url, root)
            print(f"[tie] second run: {seconds:.2f} s, {result.rows_read:,} rows read")
    finally:
        drop_database(SERVER, name)


if __name__ == "__main__":
    main()
