"""Export the raw layer from the DuckDB build database as Parquet for the dbt spark target.

With ``DBT_TARGET=spark`` the dbt project reads its sources from the Spark schema named by
``DBT_RAW_SCHEMA``. This module writes every table of DuckDB schema ``raw`` to
``<parquet_dir>/<table>/data.parquet`` with its column types (VARCHAR -> string, DOUBLE ->
double, TIMESTAMP -> timestamp, ...); the dbt macro ``create_spark_raw_tables`` then registers one
Spark parquet table over each folder (``dbt run-operation``, see :func:`spark_raw_tables_args`),
so both targets compute on identical inputs and give identical marts.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import duckdb

from dagster_project.lib.dbt.postgres_raw import raw_tables
from dagster_project.lib.ingest.contract import RAW_SCHEMA


def export_raw_to_parquet(
    duckdb_path: Path,
    parquet_dir: Path,
    tables: Iterable[str] | None = None,
    source_schema: str = RAW_SCHEMA,
) -> dict[str, int]:
    """Replace ``parquet_dir``'s export of the raw tables; return rows written per table."""
    written: dict[str, int] = {}
    with duckdb.connect(str(duckdb_path), read_only=True) as source:
        names = list(tables) if tables is not None else raw_tables(source, source_schema)
        for table in names:
            folder = parquet_dir / table
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            relation = f'"{source_schema}"."{table}"'
            source.execute(f"copy {relation} to '{folder / 'data.parquet'}' (format parquet)")
            written[table] = source.execute(f"select count(*) from {relation}").fetchone()[0]
    return written


def spark_raw_tables_args(parquet_dir: Path, tables: Iterable[str]) -> str:
    """The ``--args`` of ``dbt run-operation create_spark_raw_tables`` for an export."""
    return json.dumps({"location": str(parquet_dir.resolve()), "tables": sorted(tables)})


def main(argv: list[str] | None = None) -> None:
    """``python -m dagster_project.lib.dbt.spark_raw BUILD_DUCKDB PARQUET_DIR``: export, then
    print the ``--args`` of ``dbt run-operation create_spark_raw_tables``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("duckdb_path", type=Path)
    parser.add_argument("parquet_dir", type=Path)
    args = parser.parse_args(argv)
    written = export_raw_to_parquet(args.duckdb_path, args.parquet_dir)
    print(spark_raw_tables_args(args.parquet_dir, written))


if __name__ == "__main__":
    main()
