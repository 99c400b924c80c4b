"""Pure parts of the benchmark harness: option parsing, rollup SQL, target verdicts, report."""

from __future__ import annotations

import argparse

import pytest

from bench.__main__ import parse_sizes
from bench.harness import Measured
from bench.pg_rollups import QUERIES, rollup_queries
from bench.report import render, size_table, targets
from bench.suite import measure_iceberg_s3


def test_parse_sizes_sorts_and_accepts_underscores():
    assert parse_sizes("1_000_000,250000") == [250_000, 1_000_000]


@pytest.mark.parametrize("text", ["", "abc", "250000,x", "10"])
def test_parse_sizes_rejects_bad_input_with_the_fix(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--sizes"):
        parse_sizes(text)


@pytest.mark.parametrize("prefix", ["LiteLLM_", "Dheera AI_"])
def test_rollup_queries_quote_every_proxy_table(prefix):
    queries = rollup_queries(prefix)
    assert set(queries) == set(QUERIES)
    for sql in queries.values():
        assert f'"{prefix}SpendLogs"' in sql
        assert "{" not in sql.replace("'{", "").replace("'[]'", "")


def _size(**over):
    size = {
        "rows": 1000,
        "extraction": {
            "copy": {
                "seconds": 1.0,
                "bytes": 10**6,
                "rows_per_s": 1000.0,
                "mb_per_s": 1.0,
                "peak_rss_mb": 10,
            },
            "ours": {
                "seconds": 1.1,
                "read_seconds": 0.9,
                "load_seconds": 0.2,
                "process_seconds": 2.0,
                "rows_per_s": 909.0,
                "copy_mb_per_s": 0.9,
                "parquet_mb": 0.5,
                "peak_rss_mb": 450,
            },
            "ours_vs_copy": 1 / 1.1,
            "ours_lake_vs_copy": 1 / 0.9,
            "dlt": {"seconds": 3.0, "rows_per_s": 333.0, "parquet_mb": 0.6, "peak_rss_mb": 600},
            "ours_vs_dlt": 3 / 1.1,
        },
        "incremental": {
            "cold_seconds": 1.1,
            "nothing_new": {"seconds": 0.5, "startup_seconds": 1.5, "peak_rss_mb": 200},
        },
        "pipeline": {
            "nothing_new": {
                "seconds": 8.0,
                "beyond_startup_seconds": 3.5,
                "peak_rss_mb": 300,
                "published": False,
            },
        },
    }
    size.update(over)
    return size


def test_targets_judge_each_goal_and_ignore_peer_memory():
    verdicts = {t.name.split(" (")[0]: t for t in targets(_size())}
    assert verdicts["extraction vs COPY"].met is True  # 0.91 >= 0.85
    assert verdicts["extraction vs dlt"].met is True
    memory = verdicts["peak memory of the pipeline's processes"]
    assert memory.value == 450  # the whole runs' peaks count too
    assert memory.met is True
    # the whole run less its start-up, not the extraction alone (0.5 s)
    assert verdicts["whole nothing-new run beyond start-up"].met is False  # 3.5 s
    assert verdicts["dbt build DuckDB vs same rollups on PostgreSQL"].value is None


def test_render_names_the_machine_and_the_misses():
    run = {
        "started": "2026-01-01T00:00:00+00:00",
        "commit": "abc1234",
        "seconds": 60.0,
        "machine": {
            "nproc": 2,
            "cpu": "CPU",
            "memory_gb": 8,
            "postgresql": "15.2",
            "python": "3.11",
            "os": "Linux",
        },
        "load_average": {"mean": 1.0, "max": 2.0},
        "sizes": [_size(rows=1000), _size(rows=4000)],
    }
    text = render(run)
    assert "2 cores (CPU)" in text
    assert "PostgreSQL 15.2" in text
    assert "whole nothing-new run beyond start-up (s): 3.50 (goal < 3 s) MISSED" in text
    assert "Scaling: 1,000 -> 4,000 rows" in text


def test_the_s3_figure_says_why_it_was_not_measured(tmp_path):
    (tmp_path / "s3" / "seaweedfs" / "data").mkdir(parents=True)  # the server refuses to start
    said: list[str] = []
    copy = Measured(seconds=1.0, peak_rss_mb=10)
    figures = measure_iceberg_s3("postgresql://unused", tmp_path / "s3", copy, said.append)
    assert set(figures) == {"ours_iceberg_s3_error"}
    reason = figures["ours_iceberg_s3_error"]
    assert reason.startswith("the SeaweedFS S3 server did not start")
    assert said == [f"  ours (cold, Iceberg on S3): NOT MEASURED, {reason}"]
    size = _size()
    size["extraction"].update(figures)
    (row,) = [line for line in size_table(size) if "Iceberg tables on S3" in line]
    assert "NOT MEASURED: the SeaweedFS S3 server did not start" in row
    assert row.count("|") == 5  # one table row
