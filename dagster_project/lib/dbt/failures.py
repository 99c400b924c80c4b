"""A failed dbt build in words the person on call can act on, where the cause is known."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_project.settings import DUCKDB_MEMORY_LIMIT_ENV, DUCKDB_THREADS_ENV

OUT_OF_MEMORY = "Out of Memory Error"  # DuckDB's wording


def out_of_memory_models(run_results: Mapping[str, Any]) -> list[str]:
    """The models (by name) of a dbt ``run_results.json`` that failed because DuckDB ran out
    of memory."""
    return sorted(
        result["unique_id"].split(".")[-1]
        for result in run_results.get("results", [])
        if result.get("status") == "error" and OUT_OF_MEMORY in (result.get("message") or "")
    )


def out_of_memory_message(models: list[str], memory_limit: str) -> str:
    """What failed, under which limit, and the fix."""
    return (
        f"DuckDB ran out of memory building {', '.join(models)} with "
        f"{DUCKDB_MEMORY_LIMIT_ENV}={memory_limit}; raise "
        f"{DUCKDB_MEMORY_LIMIT_ENV} (e.g. 8GB) or lower {DUCKDB_THREADS_ENV}, then run again"
    )
