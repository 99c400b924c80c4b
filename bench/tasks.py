"""Measured tasks, each run in its own process: ``python -m bench.tasks <task> <json args>``.

Every task prints one ``BENCH_JSON {...}`` line with its own timings and counts (the convention
of :mod:`bench.extract`); the parent measures the process's wall time and peak RSS around it
(:mod:`bench.harness`).

- ``raw``: complete a warehouse's raw layer (ErrorLogs and every entity snapshot) so dbt can
  build on it; the spend logs were extracted by the measured extraction before;
- ``dlt``: dlt's ``sql_table`` source, pyarrow backend, into Parquet files on the filesystem;
- ``pg_rollups``: the rollup queries of :mod:`bench.pg_rollups`, materialized on the proxy
  database;
- ``pg_raw``: copy the raw layer of a build DuckDB into PostgreSQL for the dbt postgres target.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def task_raw(url: str, prefix: str, root: str) -> dict[str, Any]:
    """Extract ErrorLogs and the entity snapshots into the warehouse at ``root``."""
    from dagster_project.lib.duckdb import connect_writer
    from dagster_project.lib.ingest.extract import extract_fact, extract_snapshots
    from dagster_project.lib.ingest.lake import Lake
    from dagster_project.lib.ingest.source import ERROR_LOGS, SourceSession
    from dagster_project.settings import Settings

    began = time.monotonic()
    quiet = lambda _m: None  # noqa: E731
    with (
        SourceSession(url, prefix) as session,
        connect_writer(Path(root) / "build.duckdb", limits=Settings().duckdb_config) as con,
    ):
        lake = Lake(Path(root) / "lake")
        errors = extract_fact(session, con, lake, ERROR_LOGS, progress=quiet)
        snapshots = extract_snapshots(session, con, lake, progress=quiet)
    return {
        "seconds": time.monotonic() - began,
        "error_logs": errors.rows_stored,
        "snapshots": {s.raw_table: s.rows for s in snapshots},
    }


def task_dlt(url: str, prefix: str, dest: str, columns: list[str]) -> dict[str, Any]:
    """Load the spend logs with dlt (``sql_table``, pyarrow backend) into Parquet under ``dest``."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.sql_database import sql_table

    began = time.monotonic()
    resource = sql_table(
        credentials=sqlalchemy_url(url),
        table=f"{prefix}SpendLogs",
        backend="pyarrow",
        included_columns=columns,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=str(Path(dest) / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(Path(dest) / "lake").as_uri()),
        dataset_name="proxy",
    )
    info = pipeline.run(resource, loader_file_format="parquet")
    seconds = time.monotonic() - began
    trace = pipeline.last_trace
    rows = sum(trace.last_normalize_info.row_counts.get(t, 0) for t in ("dheera_ai_spend_logs",))
    rows = rows or sum(
        n for t, n in trace.last_normalize_info.row_counts.items() if not t.startswith("_dlt")
    )
    parquet = sum(p.stat().st_size for p in (Path(dest) / "lake").rglob("*.parquet"))
    return {
        "seconds": seconds,
        "rows": rows,
        "parquet_bytes": parquet,
        "has_failed_jobs": info.has_failed_jobs,
        "steps": {
            s.step: s.finished_at.timestamp() - s.started_at.timestamp() for s in trace.steps
        },
    }


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg2 SQLAlchemy driver named (what dlt's sql_database expects)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in {"postgresql", "postgres"} else url


def task_pg_rollups(url: str, prefix: str) -> dict[str, Any]:
    """Materialize every rollup query once on the proxy database; time each, count its rows.

    Each result goes into a temporary table, as dbt materializes each mart as a table: both sides
    compute and store the rollup, neither ships it to a client.
    """
    import psycopg

    from bench.pg_rollups import rollup_queries

    timings: dict[str, float] = {}
    rows: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in rollup_queries(prefix).items():
            began = time.monotonic()
            rows[name] = conn.execute(f"CREATE TEMPORARY TABLE bench_{name} AS {sql}").rowcount
            timings[name] = time.monotonic() - began
    return {"seconds": sum(timings.values()), "queries": timings, "rows": rows}


def task_pg_raw(build_path: str, url: str, schema: str) -> dict[str, Any]:
    """Copy the raw layer of ``build_path`` into PostgreSQL schema ``schema``."""
    from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres

    began = time.monotonic()
    copied = load_raw_to_postgres(Path(build_path), url, schema)
    return {"seconds": time.monotonic() - began, "rows": copied}


TASKS = {
    "raw": task_raw,
    "dlt": task_dlt,
    "pg_rollups": task_pg_rollups,
    "pg_raw": task_pg_raw,
}


def main(argv: list[str]) -> int:
    """Run task ``argv[0]`` with the keyword arguments JSON-encoded in ``argv[1]``."""
    name, kwargs = argv[0], json.loads(argv[1])
    print("BENCH_JSON", json.dumps(TASKS[name](**kwargs), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
