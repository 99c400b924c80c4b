"""The spark target gives the same marts as DuckDB, row for row, on the same raw data.

Spark runs in dbt's own process (dbt-spark's ``session`` method, a ``local[2]`` master) with a
Hive catalog in the test's folder; the raw tables are parquet tables over a Parquet export of the
DuckDB build's raw schema, and the marts are read back from the parquet files Spark wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.dbt.spark_raw import export_raw_to_parquet, spark_raw_tables_args
from tests.models.dbt_runner import AS_OF, run_dbt
from tests.models.parity import assert_marts_equal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMA = "spend_warehouse"
INCREMENTAL = ("fct_spend_daily", "fct_spend_by_tag_daily", "fct_errors_daily")


def _spark_env(spark_dir: Path) -> dict[str, str]:
    return {
        "DBT_TARGET": "spark",
        "DBT_SPARK_DIR": str(spark_dir),
        "DBT_SPARK_SCHEMA": SCHEMA,
        "DBT_RAW_SCHEMA": "raw",
    }


def test_spark_marts_equal_duckdb_marts(built_duckdb, tmp_path):
    assert shutil.which("java"), "Spark needs Java 17 or newer (openjdk-17-jre-headless)"
    spark_dir = tmp_path / "spark"
    parquet_dir = spark_dir / "raw_parquet"
    exported = export_raw_to_parquet(built_duckdb.path, parquet_dir)
    assert exported["spend_logs"] == len(built_duckdb.data.rows("spend_logs"))
    env = _spark_env(spark_dir)
    as_of = f'{{budget_as_of: "{AS_OF}"}}'
    args = spark_raw_tables_args(parquet_dir, exported)
    run_dbt(["run-operation", "create_spark_raw_tables", "--args", args], tmp_path, env)
    # ~4 minutes on two busy cores; most of it is Spark's fixed cost per query.
    run_dbt(["build"], tmp_path, env, vars_yaml=as_of, timeout=1200)

    # A mart's rows are the parquet files of its table (partition columns in the folder names).
    warehouse = spark_dir / "warehouse" / f"{SCHEMA}.db"
    with duckdb.connect() as reader:

        def spark_rows(mart: str, columns: str) -> list[tuple]:
            path = f"{warehouse / mart}/**/*.parquet"
            query = f"select {columns} from read_parquet('{path}', hive_partitioning = true)"
            return reader.execute(query).fetchall()

        assert assert_marts_equal(built_duckdb.path, spark_rows, "Spark") > 5000
        # An incremental run replaces the re-built days of the daily facts (insert_overwrite of
        # their day partitions): nothing lost, nothing twice.
        # with the attribution versions, incremental too (appended: nothing changed, no row)
        again = [*INCREMENTAL, "int_spend_attribution_versions"]
        run_dbt(["run", "--select", *again], tmp_path, env, vars_yaml=as_of, timeout=600)
        assert assert_marts_equal(built_duckdb.path, spark_rows, "Spark") > 5000
