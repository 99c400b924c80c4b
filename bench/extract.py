"""The extraction workers the benchmark runs in their own processes, and their helpers.

- ``WORKER``: one spend-log extraction (cold on an empty warehouse, else incremental): planning
  query, streaming, Parquet files, manifest and DuckDB merge, what ``raw/spend_logs`` does (with
  ``$BENCH_OBJECT_STORE``, Iceberg tables in that S3 bucket);
- ``DAGSTER_WORKER``: a whole Dagster ``extract_job`` run (SpendLogs, ErrorLogs, the snapshots
  and their checks).

Each prints one ``BENCH_JSON {...}`` line with its own timings; :mod:`bench.harness` measures
the process around it. ``extractor_select`` is the SELECT a cold extraction issues, for the
``COPY ... TO STDOUT (FORMAT binary)`` limit it is compared with.
"""

from __future__ import annotations

import json
from pathlib import Path

from dagster_project.lib.ingest.source import SPEND_LOGS, SourceSession, fact_select
from dagster_project.lib.ingest.windows import WindowOptions as _WindowOptions
from dagster_project.lib.ingest.windows import incremental_window

REPO = Path(__file__).resolve().parent.parent
PREFIX = "Dheera AI_"


def extractor_select(url: str) -> str:
    """The exact SELECT a cold extraction issues (whole table below the snapshot cap)."""
    with SourceSession(url, PREFIX) as session:
        columns = session.columns(SPEND_LOGS.source)
        window = incremental_window("created_at", None, session.cap, _WindowOptions())
        return fact_select(session, SPEND_LOGS, columns, window, include_payload=False)


# WORKER's object store (the fields of dagster_project.settings.ObjectStore as JSON): with the
# iceberg lake format, the tables go to that S3 bucket
OBJECT_STORE_ENV = "BENCH_OBJECT_STORE"

WORKER = """
import json, os, sys, time
from pathlib import Path
import adbc_driver_postgresql.dbapi  # start-up, not measured
from dagster_project.lib.duckdb import connect_writer
from dagster_project.settings import ObjectStore, Settings
from dagster_project.lib.ingest.source import SPEND_LOGS, SourceSession
from dagster_project.lib.ingest.extract import extract_fact
from dagster_project.lib.ingest.lake import Lake
url, prefix, root = sys.argv[1:4]
lake_format = sys.argv[4] if len(sys.argv) > 4 else "parquet"
store = os.environ.get("BENCH_OBJECT_STORE")
store = ObjectStore(**json.loads(store)) if store else None
began = time.monotonic()
with SourceSession(url, prefix) as session, connect_writer(
    Path(root) / "build.duckdb", limits=Settings().duckdb_config
) as con:
    lake = Lake(Path(root) / "lake", lake_format, None, store)
    r = extract_fact(session, con, lake, SPEND_LOGS, progress=lambda m: None)
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
    """Bytes of the Parquet files under a warehouse's lake."""
    return sum(p.stat().st_size for p in (root / "lake").rglob("*.parquet"))
