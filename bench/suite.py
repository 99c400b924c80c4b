"""One benchmark size: build the source with the simulator, then measure everything on it.

Order matters because later steps change the data: the extraction comparisons and the
nothing-new runs read the simulated table as built; the rollups run on the same rows; the 1 %
insert (new and late rows) comes last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.extract import (
    DAGSTER_WORKER,
    OBJECT_STORE_ENV,
    PREFIX,
    WORKER,
    extractor_select,
    lake_size,
)
from bench.harness import (
    Measured,
    bench_database,
    dbt_command,
    dbt_run_results,
    measure,
    measure_copy,
    measure_task,
    settle_server,
    temp_dir,
)
from dagster_project.lib.ingest.source import PAYLOAD_COLUMNS, SPEND_LOGS, SourceSession
from dagster_project.lib.postgres import create_database
from dagster_project.lib.sql import quote_ident, table_name
from dagster_project.settings import ICEBERG, PARQUET, ObjectStore
from devinfra.s3server import start_s3_server, stop

SIM_DAYS = 30.0
SIM_SEED = 7
NOTHING_NEW_RUNS = 3
PG_MARTS_SCHEMA = "bench_marts"
PG_RAW_SCHEMA = "bench_marts_raw"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """What to run at each size."""

    server: str
    keep: bool = False
    reuse_source: bool = False
    dlt: bool = True
    rollups: bool = True
    postgres_target: bool = True
    pipeline: bool = True
    new_fraction: float = 0.01


def mb(n_bytes: float) -> float:
    """Bytes as MB (10^6)."""
    return n_bytes / 1e6


def rate(count: float, seconds: float) -> float:
    """``count`` per second (0 when no time passed)."""
    return count / seconds if seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Source
# ---------------------------------------------------------------------------------------------


def build_source(url: str, rows: int, say: Say) -> dict[str, Any]:
    """Fill ``url`` with ``rows`` simulated requests over 30 days; vacuum and analyze."""
    from dagster_project.simulator import simulate

    began = time.monotonic()
    sim = simulate(url, PREFIX, rows=rows, days=SIM_DAYS, seed=SIM_SEED, init_schema=True)
    table = quote_ident(table_name(PREFIX, "SpendLogs"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        size = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]
    seconds = time.monotonic() - began
    say(
        f"  source: {sim.spend_logs:,} spend logs, {sim.error_logs:,} error logs in {seconds:.0f} s"
    )
    return {
        "spend_logs": sim.spend_logs,
        "error_logs": sim.error_logs,
        "build_seconds": seconds,
        "spend_logs_table_mb": mb(size),
    }


SOURCE_MARKER = "spendwh_bench_source"


def mark_source(url: str, rows: int, figures: dict[str, Any]) -> None:
    """Record what the simulator built, so that ``--reuse-source`` can find it again."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SOURCE_MARKER} (rows bigint PRIMARY KEY, figures jsonb)"
        )
        conn.execute(
            f"INSERT INTO {SOURCE_MARKER} VALUES (%s, %s) ON CONFLICT (rows) DO NOTHING",
            (rows, json.dumps(figures)),
        )


def reused_source(url: str, rows: int, say: Say) -> dict[str, Any] | None:
    """The source an earlier run simulated for ``rows`` in this database, without the rows the
    1 %-new measurement added; None when there is none."""
    table = quote_ident(table_name(PREFIX, "SpendLogs"))
    with psycopg.connect(url, autocommit=True) as conn:
        marker = conn.execute("SELECT to_regclass(%s)", (SOURCE_MARKER,)).fetchone()[0]
        if marker is None:
            return None
        found = conn.execute(
            f"SELECT figures FROM {SOURCE_MARKER} WHERE rows = %s", (rows,)
        ).fetchone()
        if found is None:
            return None
        removed = conn.execute(f"DELETE FROM {table} WHERE request_id LIKE 'bench-new-%%'").rowcount
        if removed:
            conn.execute(f"VACUUM ANALYZE {table}")
    say(f"  source: reusing the simulated {rows:,} rows ({removed:,} added rows removed)")
    return {**found[0], "reused": True}


def dlt_columns(url: str) -> list[str]:
    """The source columns our extraction reads (heavy payloads excluded), for dlt to read too."""
    wanted = {c.source for c in SPEND_LOGS.columns if c.source} - PAYLOAD_COLUMNS
    with SourceSession(url, PREFIX) as session:
        present = session.columns(SPEND_LOGS.source) or {}
    return [name for name in present if name in wanted]


INSERT_NEW_SQL = """
INSERT INTO {table} ({columns}, request_id, "startTime", "endTime", created_at)
SELECT {columns},
       'bench-new-{tag}' || request_id,
       "startTime" + shift, "endTime" + shift,
       now() AT TIME ZONE 'UTC'
FROM (
    SELECT *,
           CASE WHEN row_number() OVER (ORDER BY request_id) % 2 = 0
                THEN interval '0'  -- late: an old startTime arriving now
                ELSE (SELECT max("startTime") FROM {table}) - "startTime"
           END AS shift
    FROM {table}
    WHERE "startTime" >= (SELECT max("startTime") FROM {table}) - interval '2 days'
    ORDER BY request_id
    LIMIT {limit}
) AS sample
"""


def insert_new_rows(url: str, count: int, tag: str = "") -> dict[str, int]:
    """Copy ``count`` recent rows as new requests: half new, half late (old ``startTime``);
    ``tag`` keeps the ids of a second batch apart from the first."""
    table = quote_ident(table_name(PREFIX, "SpendLogs"))
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position",
                (table_name(PREFIX, "SpendLogs"),),
            )
        ]
        skipped = {"request_id", "startTime", "endTime", "created_at"}
        columns = ", ".join(quote_ident(n) for n in names if n not in skipped)
        sql = INSERT_NEW_SQL.format(table=table, columns=columns, limit=count, tag=tag)
        inserted = conn.execute(sql).rowcount
    return {"inserted": inserted, "late": inserted // 2}


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def extract_run(
    url: str, root: Path, lake_format: str = PARQUET, store: ObjectStore | None = None
) -> Measured:
    """Our spend-log extraction (incremental: cold on an empty ``root``) in its own process;
    with ``store``, the Iceberg tables in that bucket."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, OBJECT_STORE_ENV: json.dumps(asdict(store))} if store else None
    return measure([sys.executable, "-c", WORKER, url, PREFIX, str(root), lake_format], env=env)


def extract_figures(m: Measured) -> dict[str, Any]:
    """The JSON figures of one extraction run."""
    inner = m.result
    return {
        "seconds": inner["seconds"],
        "process_seconds": m.seconds,
        "startup_seconds": m.seconds - inner["seconds"],
        "read_seconds": inner["read_seconds"],
        "load_seconds": inner["load_seconds"],
        "rows_read": inner["rows"],
        "rows_stored": inner["stored"],
        "peak_rss_mb": m.peak_rss_mb,
    }


def measure_extraction(url: str, root: Path, opts: Options, say: Say) -> dict[str, Any]:
    """COPY limit, our cold extract (Parquet lake; Iceberg on local disk and on S3) and dlt, on
    the same table."""
    copy = measure_copy(url, extractor_select(url))
    say(f"  COPY binary: {copy.seconds:.1f} s, {mb(copy.result['bytes']):.0f} MB")
    cold = extract_run(url, root)
    ours = extract_figures(cold)
    rows = ours["rows_read"]
    copy_bytes = copy.result["bytes"]
    ours.update(
        rows_per_s=rate(rows, ours["seconds"]),
        copy_mb_per_s=rate(mb(copy_bytes), ours["seconds"]),
        parquet_mb=mb(lake_size(root)),
    )
    ours["parquet_mb_per_s"] = rate(ours["parquet_mb"], ours["seconds"])
    say(f"  ours (cold): {ours['seconds']:.1f} s, peak {ours['peak_rss_mb']} MB")
    # the same landing with the lake as Iceberg tables (local disk, SQLite catalog)
    iceberg_root = root.parent / f"{root.name}-iceberg"
    try:
        iceberg = extract_figures(extract_run(url, iceberg_root, ICEBERG))
    finally:
        shutil.rmtree(iceberg_root, ignore_errors=True)
    say(f"  ours (cold, Iceberg lake): {iceberg['seconds']:.1f} s")
    iceberg_s3 = measure_iceberg_s3(url, root.parent / f"{root.name}-iceberg-s3", copy, say)
    figures: dict[str, Any] = {
        "copy": {
            "seconds": copy.seconds,
            "bytes": copy_bytes,
            "rows_per_s": rate(rows, copy.seconds),
            "mb_per_s": rate(mb(copy_bytes), copy.seconds),
            "peak_rss_mb": copy.peak_rss_mb,
        },
        "ours": ours,
        "ours_iceberg": iceberg,
        "ours_iceberg_vs_copy": rate(copy.seconds, iceberg["seconds"]),
        **iceberg_s3,
        "ours_vs_copy": rate(copy.seconds, ours["seconds"]),
        "ours_lake_vs_copy": rate(copy.seconds, ours["read_seconds"]),
        "ours_process_vs_copy": rate(copy.seconds, ours["process_seconds"]),
    }
    if opts.dlt:
        dest = temp_dir("bench-dlt-")
        try:
            m = measure_task(
                "dlt", url=url, prefix=PREFIX, dest=str(dest), columns=dlt_columns(url)
            )
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        dlt = {
            "seconds": m.result["seconds"],
            "process_seconds": m.seconds,
            "rows": m.result["rows"],
            "rows_per_s": rate(m.result["rows"], m.result["seconds"]),
            "parquet_mb": mb(m.result["parquet_bytes"]),
            "parquet_mb_per_s": rate(mb(m.result["parquet_bytes"]), m.result["seconds"]),
            "copy_mb_per_s": rate(mb(copy_bytes), m.result["seconds"]),
            "peak_rss_mb": m.peak_rss_mb,
            "steps": m.result["steps"],
            "failed_jobs": m.result["has_failed_jobs"],
        }
        figures["dlt"] = dlt
        figures["ours_vs_dlt"] = rate(dlt["seconds"], ours["seconds"])
        say(f"  dlt: {dlt['seconds']:.1f} s, peak {dlt['peak_rss_mb']} MB")
    return figures


def measure_iceberg_s3(url: str, root: Path, copy: Measured, say: Say) -> dict[str, Any]:
    """The cold extraction with the Iceberg tables on a SeaweedFS S3 server started here (same
    machine, loopback; SQLite catalog like the local figure): ``ours_iceberg_s3`` and its ratio
    to ``copy``, or ``ours_iceberg_s3_error`` saying why it was not measured."""
    try:
        try:
            server, proc = start_s3_server(root / "seaweedfs")
        except (OSError, RuntimeError) as exc:
            reason = f"the SeaweedFS S3 server did not start: {exc}"
            say(f"  ours (cold, Iceberg on S3): NOT MEASURED, {reason}")
            return {"ours_iceberg_s3_error": reason}
        try:
            figures = extract_figures(extract_run(url, root / "wh", ICEBERG, server.store("bench")))
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    say(f"  ours (cold, Iceberg on S3): {figures['seconds']:.1f} s")
    return {
        "ours_iceberg_s3": figures,
        "ours_iceberg_s3_vs_copy": rate(copy.seconds, figures["seconds"]),
    }


def measure_nothing_new(url: str, root: Path, say: Say) -> dict[str, Any]:
    """Median of a few nothing-new extractions of the populated ``root``."""
    runs = [extract_figures(extract_run(url, root)) for _ in range(NOTHING_NEW_RUNS)]
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    figures = {
        **best,
        "runs_seconds": [r["seconds"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }
    say(f"  nothing new: {figures['seconds']:.2f} s (+{figures['startup_seconds']:.1f} s start-up)")
    return figures


def measure_dagster_nothing_new(url: str, root: Path, say: Say) -> dict[str, Any]:
    """A whole Dagster ``extract_job`` run with nothing new (after one run that catches up)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PROXY_TABLE_PREFIX": PREFIX,
        "SPEND_WAREHOUSE_DIR": str(root),
    }
    measure([sys.executable, "-c", DAGSTER_WORKER], env=env)  # first run: snapshots, catch-up
    m = measure([sys.executable, "-c", DAGSTER_WORKER], env=env)
    figures = {
        "seconds": m.result["seconds"],
        "process_seconds": m.seconds,
        "startup_seconds": m.seconds - m.result["seconds"],
        "success": m.result["success"],
        "peak_rss_mb": m.peak_rss_mb,
    }
    say(f"  nothing new (Dagster extract_job): {figures['seconds']:.1f} s")
    return figures


def measure_new_rows(url: str, root: Path, rows: int, opts: Options, say: Say) -> dict[str, Any]:
    """Insert ``new_fraction`` new rows (half of them late) and extract them incrementally."""
    added = insert_new_rows(url, max(1, round(rows * opts.new_fraction)))
    figures = {**extract_figures(extract_run(url, root)), **added}
    say(
        f"  {added['inserted']:,} new rows ({added['late']:,} late): "
        f"{figures['seconds']:.2f} s, stored {figures['rows_stored']:,}"
    )
    return figures


SPENDWH = Path(sys.executable).with_name("spendwh")


def spendwh_run(env: dict[str, str]) -> dict[str, Any]:
    """One whole ``spendwh run`` as a user starts it (its own process, true peak RSS): extract,
    dbt build, alerts, publish."""
    m = measure([str(SPENDWH), "run"], env=env, json_out=False)
    out = m.result["stdout"]
    after_startup = re.search(r"\(([\d.]+) s after loading the definitions\)", out)
    return {
        "seconds": m.seconds,
        "beyond_startup_seconds": float(after_startup[1]) if after_startup else None,
        "peak_rss_mb": m.peak_rss_mb,
        "published": "spendwh run: done" in out and "nothing new:" not in out,
    }


def measure_pipeline_runs(
    url: str, rows: int, copy_seconds: float, opts: Options, say: Say
) -> dict[str, Any]:
    """What the user waits for: the whole pipeline run, cold on an empty warehouse, then with
    nothing new, then with ``new_fraction`` new rows (half of them late), against the COPY limit
    measured in the same run."""
    root = temp_dir("bench-pipeline-")
    env_file = root / "empty.env"
    env_file.write_text("")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PROXY_TABLE_PREFIX": PREFIX,
        "SPEND_WAREHOUSE_DIR": str(root / "wh"),
        "SPEND_WAREHOUSE_ENV_FILE": str(env_file),
    }
    for name in ("DAGSTER_HOME", "SPEND_ALERTS_WEBHOOK_URL", "SPEND_ALERTS_SLACK_WEBHOOK_URL"):
        env.pop(name, None)
    try:
        cold = spendwh_run(env)
        say(f"  whole run, cold: {cold['seconds']:.1f} s, peak {cold['peak_rss_mb']} MB")
        quiet = spendwh_run(env)
        say(f"  whole run, nothing new: {quiet['seconds']:.1f} s")
        added = insert_new_rows(url, max(1, round(rows * opts.new_fraction)), tag="run-")
        new = {**spendwh_run(env), **added}
        say(f"  whole run, {added['inserted']:,} new rows: {new['seconds']:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "cold": {**cold, "vs_copy": rate(copy_seconds, cold["seconds"])},
        "nothing_new": quiet,
        "one_percent_new": new,
    }


def dbt_build(work: Path, env: dict[str, str]) -> dict[str, Any]:
    """The pipeline's ``dbt build`` (models and data tests; ``build_args``) in its own process,
    timed, with per-node times.

    The project is parsed first, untimed, as it is between scheduled runs (partial parsing from
    the previous run's target); the import of dbt itself is inside the timed process. A failing
    data test does not stop the benchmark: the models are built all the same; the failed nodes
    are listed in the figures.
    """
    from dagster_project.defs.dbt.assets import build_args

    environment = {**os.environ, **env}
    measure(dbt_command(["parse"], work), env=environment, json_out=False)
    m = measure(dbt_command(build_args(), work), env=environment, json_out=False, check=False)
    nodes, run_seconds = dbt_run_results(work, m.result["stdout"])
    models = {n["id"]: n["seconds"] for n in nodes if n["id"].startswith("model.")}
    return {
        "seconds": m.seconds,
        "run_seconds": run_seconds,
        "models_seconds": sum(models.values()),
        "marts_seconds": sum(v for k, v in models.items() if ".fct_" in k or ".dim_" in k),
        "tests_seconds": sum(n["seconds"] for n in nodes if not n["id"].startswith("model.")),
        "nodes": len(nodes),
        "failed_nodes": [n["id"] for n in nodes if n["status"] in {"error", "fail"}],
        "peak_rss_mb": m.peak_rss_mb,
        "slowest": dict(sorted(models.items(), key=lambda kv: -kv[1])[:5]),
        "models": {k.rsplit(".", 1)[-1]: v for k, v in models.items()},
    }


def measure_rollups(url: str, root: Path, opts: Options, say: Say) -> dict[str, Any]:
    """dbt build on DuckDB vs the same rollups on the proxy's PostgreSQL vs the postgres target;
    each side starts from a settled server (``settle_server``)."""
    settled = settle_server(url)
    pg = measure_task("pg_rollups", url=url, prefix=PREFIX)
    figures: dict[str, Any] = {
        "postgres_direct": {
            "seconds": pg.result["seconds"],
            "process_seconds": pg.seconds,
            "queries": pg.result["queries"],
            "rows": pg.result["rows"],
        }
    }
    say(f"  rollups on the proxy's PostgreSQL: {pg.result['seconds']:.1f} s")
    work = temp_dir("bench-dbt-")
    try:
        settled += settle_server(url)
        figures["checkpoint_seconds"] = settled
        duck = dbt_build(
            work / "duckdb",
            {"DBT_TARGET": "duckdb", "SPEND_WAREHOUSE_BUILD_PATH": str(root / "build.duckdb")},
        )
        figures["dbt_duckdb"] = duck
        figures["duckdb_vs_postgres_direct"] = rate(pg.result["seconds"], duck["seconds"])
        figures["duckdb_run_vs_postgres_direct"] = rate(pg.result["seconds"], duck["run_seconds"])
        say(
            f"  dbt build on DuckDB: {duck['seconds']:.1f} s "
            f"(run phase {duck['run_seconds']:.1f} s)"
        )
        if opts.postgres_target:
            figures.update(measure_postgres_target(url, root, work, say))
            figures["duckdb_vs_postgres_target"] = rate(
                figures["dbt_postgres"]["seconds"], duck["seconds"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def measure_postgres_target(url: str, root: Path, work: Path, say: Say) -> dict[str, Any]:
    """Copy the raw layer into PostgreSQL, then ``dbt build`` with the postgres target."""
    from dagster_project.settings import postgres_target

    copy = measure_task(
        "pg_raw", build_path=str(root / "build.duckdb"), url=url, schema=PG_RAW_SCHEMA
    )
    target = postgres_target({"WAREHOUSE_POSTGRES_URL": url})
    env = {  # the variables of the committed dbt/profiles.yml, which this hand run uses
        "DBT_POSTGRES_HOST": target.host,
        "DBT_POSTGRES_PORT": str(target.port),
        "DBT_POSTGRES_USER": target.user,
        "DBT_POSTGRES_PASSWORD": target.password,
        "DBT_POSTGRES_DBNAME": target.dbname,
        "DBT_TARGET": "postgres",
        "DBT_POSTGRES_SCHEMA": PG_MARTS_SCHEMA,
        "DBT_RAW_SCHEMA": PG_RAW_SCHEMA,
    }
    built = dbt_build(work / "postgres", env)
    say(
        f"  raw copy to PostgreSQL: {copy.seconds:.1f} s; "
        f"dbt build postgres: {built['seconds']:.1f} s"
    )
    return {
        "pg_raw_copy": {"seconds": copy.seconds, "rows": copy.result["rows"]},
        "dbt_postgres": built,
    }


def run_size(rows: int, opts: Options, say: Say = print) -> dict[str, Any]:
    """Every measurement at one size, on one freshly simulated source."""
    say(f"size {rows:,} rows")
    figures: dict[str, Any] = {"rows": rows}
    name = f"spendwh_bench_{rows}"
    with bench_database(opts.server, name, opts.keep, reuse=opts.reuse_source) as url:
        source = reused_source(url, rows, say) if opts.reuse_source else None
        if source is None:
            if opts.reuse_source:  # an unmarked leftover: start afresh
                create_database(opts.server, name, drop=True)
            source = build_source(url, rows, say)
            mark_source(url, rows, source)
        figures["source"] = source
        root = temp_dir("bench-wh-")
        try:
            figures["extraction"] = measure_extraction(url, root / "wh", opts, say)
            incremental: dict[str, Any] = {
                "cold_seconds": figures["extraction"]["ours"]["seconds"],
                "nothing_new": measure_nothing_new(url, root / "wh", say),
            }
            raw = measure_task("raw", url=url, prefix=PREFIX, root=str(root / "wh"))
            figures["raw_layer_rest_seconds"] = raw.seconds
            incremental["nothing_new_dagster"] = measure_dagster_nothing_new(url, root / "wh", say)
            if opts.rollups:
                figures["rollups"] = measure_rollups(url, root / "wh", opts, say)
            incremental["one_percent_new"] = measure_new_rows(url, root / "wh", rows, opts, say)
            figures["incremental"] = incremental
            if opts.pipeline:
                figures["pipeline"] = measure_pipeline_runs(
                    url, rows, figures["extraction"]["copy"]["seconds"], opts, say
                )
        finally:
            if opts.keep:
                say(f"  kept warehouse {root} and database spendwh_bench_{rows}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    return figures
