"""Extraction benchmark: our cold extract vs ``COPY (same SELECT) TO STDOUT (FORMAT binary)``.

Builds (or reuses) a proxy database with at least a million SpendLogs rows of realistic width,
then measures, each in its own process:

- ``copy``: ``psql`` running ``COPY (<the extractor's SELECT>) TO STDOUT (FORMAT binary)`` into
  /dev/null: the server's own serialization limit;
- ``extract``: a cold extraction into an empty warehouse (planning query, streaming, Parquet
  files, manifest, DuckDB merge), i.e. what ``raw/spend_logs`` does on its first run;
- ``noop``: the same extraction again with nothing new, and a whole Dagster ``extract_job`` run
  with nothing new (SpendLogs, ErrorLogs, 21 snapshots, 4 checks).

Peak memory is the child's maximum RSS (``wait4``). Prints a table and writes JSON under
``bench/results/``. Usage::

    uv run python bench/extract.py --server postgresql://postgres@127.0.0.1:5432/postgres \
        [--rows 1000000] [--repeat 3] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dagster_project.lib.extract import (  # noqa: E402
    SPEND_LOGS,
    SourceSession,
    fact_select,
    incremental_window,
)
from dagster_project.lib.extract import WindowOptions as _WindowOptions  # noqa: E402
from dagster_project.lib.migrations import apply_migrations  # noqa: E402
from dagster_project.lib.postgres import create_database, with_database  # noqa: E402

DB_NAME = "spendwh_bench_extract"
PREFIX = "Dheera AI_"
RESULTS = REPO / "bench" / "results"

FILL_SQL = """
INSERT INTO {table} (
    request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens,
    "startTime", "endTime", "completionStartTime", model, model_id, model_group,
    custom_llm_provider, api_base, "user", metadata, cache_hit, cache_key, request_tags,
    team_id, end_user, requester_ip_address, session_id, status, organization_id,
    request_duration_ms, litellm_call_id, created_at, updated_at)
SELECT
    'chatcmpl-' || md5(g::text),
    'acompletion',
    md5('key' || (g % 500)),
    (g % 997) * 0.0000137,
    300 + g % 2000, 200 + g % 1500, 100 + g % 500,
    ts, ts + interval '2.5 s', ts + interval '0.4 s',
    'gpt-4o-mini-2024-07-18', md5('deployment' || (g % 20)), 'gpt-4o-mini', 'openai',
    'https://api.openai.com/v1', 'user-' || (g % 300),
    jsonb_build_object(
        'user_api_key', md5('key' || (g % 500)),
        'user_api_key_alias', 'service-' || (g % 500),
        'user_api_key_team_id', 'team-' || (g % 40),
        'user_api_key_team_alias', 'Team number ' || (g % 40),
        'user_api_key_org_id', 'org-' || (g % 5),
        'user_api_key_user_id', 'user-' || (g % 300),
        'user_api_key_user_email', 'user' || (g % 300) || '@example.com',
        'spend_logs_metadata', jsonb_build_object('project', 'p' || (g % 12), 'env', 'prod'),
        'requester_ip_address', '10.0.' || (g % 250) || '.7',
        'additional_usage_values', jsonb_build_object(
            'prompt_tokens_details', jsonb_build_object('cached_tokens', g % 64),
            'completion_tokens_details', jsonb_build_object('reasoning_tokens', 0)),
        'cost_breakdown', jsonb_build_object('input_cost', 0.00001, 'output_cost', 0.00002),
        'model_map_information', jsonb_build_object(
            'model_map_key', 'gpt-4o-mini-2024-07-18',
            'model_map_value', jsonb_build_object('max_tokens', 16384,
                'input_cost_per_token', 0.00000015, 'output_cost_per_token', 0.0000006,
                'litellm_provider', 'openai', 'mode', 'chat', 'supports_vision', true)),
        'litellm_overhead_time_ms', 3.2,
        'status', 'success'),
    'False', 'Cache OFF', '["User-Agent: OpenAI/Python 1.40.0"]'::jsonb,
    'team-' || (g % 40), CASE WHEN g % 3 = 0 THEN 'customer-' || (g % 90) ELSE '' END,
    '10.0.0.1', md5('session' || (g / 4)), 'success', 'org-' || (g % 5), 2500,
    md5('call' || g),
    ts + interval '8 s', ts + interval '8 s'
FROM generate_series(1, {rows}) AS g,
     LATERAL (SELECT timestamp '{end}' - g * interval '{step} s' AS ts) AS t
"""


def build_source(server: str, rows: int, reuse: bool) -> str:
    """The benchmark database URL, filled with ``rows`` spend logs (reused if asked)."""
    import psycopg

    url = with_database(server, DB_NAME)
    table = f'"{PREFIX}SpendLogs"'
    if reuse:
        try:
            with psycopg.connect(url) as conn:
                have = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if have >= rows:
                print(f"reusing {DB_NAME} with {have} rows")
                return url
        except psycopg.Error:
            pass
    create_database(server, DB_NAME, drop=True)
    apply_migrations(url, PREFIX)
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 3600))
    step = 30 * 86400 / rows  # spread over 30 days
    began = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL_SQL.format(table=table, rows=rows, end=end, step=f"{step:.6f}"))
        conn.execute(f"VACUUM ANALYZE {table}")
        size = conn.execute(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")
        print(f"filled {rows} rows in {time.monotonic() - began:.0f} s ({size.fetchone()[0]})")
    return url


def extractor_select(url: str) -> str:
    """The exact SELECT a cold extraction issues (whole table below the snapshot cap)."""
    with SourceSession(url, PREFIX) as session:
        columns = session.columns(SPEND_LOGS.source)
        window = incremental_window("created_at", None, session.cap, _WindowOptions())
        return fact_select(session, SPEND_LOGS, columns, window, include_payload=False)


def run_measured(
    argv: list[str], env: dict | None = None, capture: bool = True
) -> tuple[float, int, str]:
    """Run ``argv``; return wall seconds, peak RSS in MB (wait4) and stdout."""
    with tempfile.TemporaryFile() as out:
        began = time.monotonic()
        stdout = out if capture else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode()
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {err[-2000:]}")
        out.seek(0)
        return wall, usage.ru_maxrss // 1024, out.read().decode()


WORKER = """
import json, sys, time
from pathlib import Path
import adbc_driver_postgresql.dbapi  # start-up, not measured
from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.extract import SPEND_LOGS, SourceSession
from dagster_project.lib.ingest import extract_fact
url, prefix, root = sys.argv[1:4]
began = time.monotonic()
with SourceSession(url, prefix) as session, connect_writer(Path(root) / "build.duckdb") as con:
    r = extract_fact(session, con, Path(root) / "lake", SPEND_LOGS, progress=lambda m: None)
print("BENCH_JSON", json.dumps({"seconds": time.monotonic() - began, "rows": r.rows_read,
                  "stored": r.rows_stored, "merged": r.rows_merged,
                  "read_seconds": r.read_seconds, "load_seconds": r.load_seconds}))
"""

DAGSTER_WORKER = """
import json, time
began_import = time.monotonic()
import dagster as dg
from dagster_project.definitions import defs
job = defs().resolve_job_def("extract_job")
began = time.monotonic()
result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
    run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
print("BENCH_JSON", json.dumps({"seconds": time.monotonic() - began, "success": result.success,
                  "startup": began - began_import}))
"""


def parse_result(out: str) -> dict:
    """The worker's result line (other output may precede or follow it)."""
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(f"no result in worker output: {out[-2000:]}")


def lake_size(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "lake").rglob("*.parquet"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL"), required=False)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="reuse a filled benchmark database")
    args = parser.parse_args()
    if not args.server:
        parser.error("--server (or TEST_DATABASE_URL) is required")

    url = build_source(args.server, args.rows, args.reuse)
    select = extractor_select(url)
    copy_sql = f"COPY ({select}) TO STDOUT (FORMAT binary)"

    copy_runs, extract_runs = [], []
    for i in range(args.repeat):
        wall, rss, _ = run_measured(["psql", "-X", "-q", url, "-c", copy_sql], capture=False)
        copy_runs.append({"seconds": wall, "rss_mb": rss})
        with tempfile.TemporaryDirectory(prefix="bench-wh-") as root:
            wall, rss, out = run_measured([sys.executable, "-c", WORKER, url, PREFIX, root])
            inner = parse_result(out)
            extract_runs.append(
                {
                    **inner,
                    "process_seconds": wall,
                    "rss_mb": rss,
                    "parquet_mb": lake_size(Path(root)) / 1e6,
                }
            )
        print(
            f"run {i + 1}: copy {copy_runs[-1]['seconds']:.2f} s, "
            f"extract {extract_runs[-1]['seconds']:.2f} s"
        )

    # nothing-new runs on a populated warehouse
    with tempfile.TemporaryDirectory(prefix="bench-wh-") as root:
        run_measured([sys.executable, "-c", WORKER, url, PREFIX, root])
        wall, rss, out = run_measured([sys.executable, "-c", WORKER, url, PREFIX, root])
        noop = {**parse_result(out), "process_seconds": wall, "rss_mb": rss}
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "PROXY_TABLE_PREFIX": PREFIX,
            "SPEND_WAREHOUSE_DIR": root,
        }
        run_measured([sys.executable, "-c", DAGSTER_WORKER], env=env)  # snapshots, first time
        wall, rss, out = run_measured([sys.executable, "-c", DAGSTER_WORKER], env=env)
        noop_job = parse_result(out)
        noop_job.update(process_seconds=wall, rss_mb=rss)

    rows = extract_runs[0]["rows"]
    copy_s = statistics.median(r["seconds"] for r in copy_runs)
    ext_s = statistics.median(r["seconds"] for r in extract_runs)
    lake_s = statistics.median(r["seconds"] - r["load_seconds"] for r in extract_runs)
    load_s = statistics.median(r["load_seconds"] for r in extract_runs)
    parquet_mb = extract_runs[0]["parquet_mb"]
    summary = {
        "rows": rows,
        "copy_seconds": copy_s,
        "copy_rows_per_s": rows / copy_s,
        "copy_peak_rss_mb": max(r["rss_mb"] for r in copy_runs),
        "lake_seconds (source -> Parquet lake)": lake_s,
        "lake_rows_per_s": rows / lake_s,
        "lake_vs_copy": copy_s / lake_s,
        "lake_parquet_mb_per_s": parquet_mb / lake_s,
        "duckdb_load_seconds": load_s,
        "end_to_end_seconds (lake + DuckDB)": ext_s,
        "end_to_end_rows_per_s": rows / ext_s,
        "end_to_end_vs_copy": copy_s / ext_s,
        "extract_peak_rss_mb": max(r["rss_mb"] for r in extract_runs),
        "parquet_mb": parquet_mb,
        "noop_seconds": noop["seconds"],
        "noop_process_seconds": noop["process_seconds"],
        "noop_job_seconds (extract_job, Dagster)": noop_job["seconds"],
        "noop_job_process_seconds": noop_job["process_seconds"],
        "noop_job_success": noop_job["success"],
    }
    print()
    print(f"{'measure':<46}{'value':>14}")
    for key, value in summary.items():
        text = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<46}{text:>14}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file = RESULTS / f"extract-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    out_file.write_text(
        json.dumps(
            {
                "summary": summary,
                "copy_runs": copy_runs,
                "extract_runs": extract_runs,
                "noop": noop,
                "noop_job": noop_job,
                "select": select,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
