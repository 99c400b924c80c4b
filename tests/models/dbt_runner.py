"""Real dbt runs for the tests: the CLI on the project with its own target and log folders."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dagster_project.settings import DBT_PROJECT_DIR
from tests.models.raw_data import RawDataset

AS_OF = "2028-03-01 12:00:00"
DBT_BIN = Path(sys.executable).with_name("dbt")

MARTS = (
    "fct_spend_daily",
    "fct_spend_by_tag_daily",
    "fct_errors_daily",
    "fct_budget_periods",
    "fct_budget_threshold_crossings",
    "fct_budget_duration_errors",
    "fct_spend_counter_reconciliation",
    "fct_budget_window_reconciliation",
    "fct_budget_limit_history",
    "dim_keys",
    "dim_teams",
    "dim_organizations",
    "dim_users",
    "dim_end_users",
)


class DbtFailedError(AssertionError):
    """A dbt command exited non-zero; the message carries its output."""


def run_dbt(
    args: list[str],
    work_dir: Path,
    env: Mapping[str, str],
    vars_yaml: str | None = None,
    timeout: int = 600,
) -> str:
    """Run the dbt CLI on the project with its own target/log dirs; return its output."""
    command = [str(DBT_BIN), *args, "--profiles-dir", str(DBT_PROJECT_DIR)]
    command += ["--project-dir", str(DBT_PROJECT_DIR)]
    if vars_yaml:
        command += ["--vars", vars_yaml]
    full_env = {
        **os.environ,
        "DBT_TARGET_PATH": str(work_dir / "target"),
        "DBT_LOG_PATH": str(work_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **env,
    }
    result = subprocess.run(
        command, env=full_env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        raise DbtFailedError(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}")
    return result.stdout


def duckdb_env(build_path: Path) -> dict[str, str]:
    """Environment pointing dbt's duckdb target at ``build_path``."""
    return {"DBT_TARGET": "duckdb", "SPEND_WAREHOUSE_BUILD_PATH": str(build_path)}


def read_mart(path: Path, name: str, schema: str = "main") -> list[dict[str, Any]]:
    """All rows of a mart in the DuckDB file at ``path``, as dicts."""
    with duckdb.connect(str(path), read_only=True) as conn:
        cursor = conn.execute(f"select * from {schema}.{name}")
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class BuiltWarehouse:
    """A DuckDB build database with the raw layer and every model built by `dbt build`."""

    path: Path
    data: RawDataset
    output: str
