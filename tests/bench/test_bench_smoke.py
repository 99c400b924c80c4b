"""Smoke test of ``python -m bench`` at a tiny size: it runs end to end and reports every figure.

Not a timed test: the figures of a 3,000-row source say nothing about performance; this checks
that each measured thing ran on the same data and landed in the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = 3_000

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _figure(data: dict, path: str):
    for key in path.split("."):
        assert isinstance(data, dict), f"figure {path!r}: {key!r} is under a plain value"
        assert key in data, f"missing figure {path!r} (at {key!r})"
        data = data[key]
    return data


POSITIVE_FIGURES = (
    "source.build_seconds",
    "extraction.copy.seconds",
    "extraction.copy.bytes",
    "extraction.copy.peak_rss_mb",
    "extraction.ours.seconds",
    "extraction.ours.rows_per_s",
    "extraction.ours.copy_mb_per_s",
    "extraction.ours.parquet_mb",
    "extraction.ours.peak_rss_mb",
    "extraction.ours_vs_copy",
    "extraction.ours_iceberg.seconds",
    "extraction.ours_iceberg.peak_rss_mb",
    "extraction.ours_iceberg_vs_copy",
    "extraction.ours_iceberg_s3.seconds",
    "extraction.ours_iceberg_s3.peak_rss_mb",
    "extraction.ours_iceberg_s3_vs_copy",
    "extraction.dlt.seconds",
    "extraction.dlt.rows_per_s",
    "extraction.dlt.peak_rss_mb",
    "extraction.ours_vs_dlt",
    "incremental.cold_seconds",
    "incremental.nothing_new.seconds",
    "incremental.nothing_new.startup_seconds",
    "incremental.nothing_new.peak_rss_mb",
    "incremental.nothing_new_dagster.seconds",
    "incremental.one_percent_new.seconds",
    "incremental.one_percent_new.peak_rss_mb",
    "rollups.postgres_direct.seconds",
    "rollups.dbt_duckdb.seconds",
    "rollups.dbt_duckdb.models_seconds",
    "rollups.dbt_duckdb.run_seconds",
    "rollups.dbt_duckdb.peak_rss_mb",
    "rollups.duckdb_vs_postgres_direct",
    "rollups.checkpoint_seconds",
    "pipeline.cold.seconds",
    "pipeline.cold.peak_rss_mb",
    "pipeline.cold.vs_copy",
    "pipeline.nothing_new.seconds",
    "pipeline.nothing_new.beyond_startup_seconds",
    "pipeline.one_percent_new.seconds",
    "pipeline.one_percent_new.inserted",
)


def test_bench_reports_every_figure(pg_server_url, tmp_path):
    command = [sys.executable, "-m", "bench", "--rows", str(ROWS), "--server", pg_server_url]
    command += ["--results-dir", str(tmp_path), "--no-results-md"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| our cold extract" in done.stdout
    assert "| our cold extract, Iceberg tables on S3" in done.stdout

    run = json.loads((tmp_path / "latest.json").read_text())
    assert run["machine"]["nproc"] >= 1
    assert run["machine"]["postgresql"]
    (size,) = run["sizes"]
    not_measured = size["extraction"].get("ours_iceberg_s3_error")
    assert not_measured is None, not_measured
    for path in POSITIVE_FIGURES:
        assert _figure(size, path) > 0, path

    # every measured thing read the same simulated rows
    rows = _figure(size, "source.spend_logs")
    assert _figure(size, "extraction.ours.rows_read") == rows
    assert _figure(size, "extraction.ours_iceberg.rows_read") == rows
    assert _figure(size, "extraction.ours_iceberg_s3.rows_read") == rows
    assert _figure(size, "extraction.dlt.rows") == rows
    assert _figure(size, "incremental.nothing_new.rows_stored") == 0
    new = _figure(size, "incremental.one_percent_new")
    assert new["inserted"] == round(ROWS * 0.01)
    assert new["late"] == new["inserted"] // 2
    assert new["rows_stored"] == new["inserted"]
    assert _figure(size, "incremental.nothing_new_dagster.success") is True
    assert _figure(size, "pipeline.cold.published") is True
    assert _figure(size, "pipeline.nothing_new.published") is False  # dbt and publish skipped
    assert _figure(size, "pipeline.one_percent_new.published") is True
    assert _figure(size, "rollups.dbt_duckdb.failed_nodes") == []
    assert set(_figure(size, "rollups.postgres_direct.queries")) == {
        "spend_daily",
        "spend_by_tag_daily",
        "errors_daily",
        "budget_periods",
    }
    if urlsplit(pg_server_url).hostname:  # the postgres target needs a TCP server
        assert _figure(size, "rollups.dbt_postgres.seconds") > 0
        assert _figure(size, "rollups.dbt_postgres.failed_nodes") == []
        assert _figure(size, "rollups.pg_raw_copy.rows")["spend_logs"] == rows
