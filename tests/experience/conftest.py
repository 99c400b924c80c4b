"""A warehouse built from simulated traffic through the real pipeline, shared by the session.

The simulator fills a fresh proxy database (real schema from the upstream migrations) with a few
days of traffic; ``spendwh run`` (a subprocess, configured only through the environment like a
user's shell) extracts it, builds the dbt models, evaluates the alerts and publishes
``warehouse.duckdb``. The notebooks and the docs site are then exercised against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import DEFAULT_TABLE_PREFIX
from dagster_project.simulator import simulate

SIMULATED_DAYS = 3
REQUESTS_PER_DAY = 1000


@dataclass(frozen=True)
class BuiltWarehouse:
    """A warehouse directory holding a published ``warehouse.duckdb`` and its build state."""

    warehouse_dir: Path
    database_url: str
    spend_logs: int

    def environment(self) -> dict[str, str]:
        """The process environment of a user pointed at this warehouse and its source."""
        env = {k: v for k, v in os.environ.items() if k not in {"DBT_TARGET", "PYTHONPATH"}}
        env.update(
            SPEND_WAREHOUSE_DIR=str(self.warehouse_dir),
            DATABASE_URL=self.database_url,
            PROXY_TABLE_PREFIX=DEFAULT_TABLE_PREFIX,
        )
        return env


@pytest.fixture(scope="session")
def built_warehouse(pg_server_url, tmp_path_factory) -> Iterator[BuiltWarehouse]:
    """Simulate a few days of traffic and run the whole pipeline once (about a minute)."""
    root = tmp_path_factory.mktemp("experience")
    dbname = f"spendwh_experience_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, dbname)
    try:
        apply_migrations(url, DEFAULT_TABLE_PREFIX)
        result = simulate(
            url,
            DEFAULT_TABLE_PREFIX,
            seed=11,
            days=SIMULATED_DAYS,
            requests_per_day=REQUESTS_PER_DAY,
        )
        warehouse = BuiltWarehouse(root / "warehouse", url, result.spend_logs)
        run = subprocess.run(
            [sys.executable, "-m", "dagster_project.cli", "run"],
            env=warehouse.environment(),
            cwd=root,  # no stray .env
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, (
            f"spendwh run failed:\n{run.stdout[-6000:]}\n{run.stderr[-4000:]}"
        )
        with duckdb.connect(
            str(warehouse.warehouse_dir / "warehouse.duckdb"), read_only=True
        ) as db:
            requests = db.execute("select sum(request_count) from fct_spend_daily").fetchone()[0]
        assert requests == result.spend_logs > 1000  # every simulated request reached the marts
        yield warehouse
    finally:
        drop_database(pg_server_url, dbname)
