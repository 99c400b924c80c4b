"""The README's main command works on a fresh clone, and running it twice is safe.

This is the newcomer's path: ``git clone`` then ``make demo`` with no DATABASE_URL, so the demo
starts an embedded PostgreSQL, simulates 30 days of traffic and runs the whole pipeline.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from dagster_project.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_TIMEOUT_S = 900


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    for name in ("DATABASE_URL", "TEST_DATABASE_URL", "SPEND_WAREHOUSE_DIR", "DAGSTER_HOME"):
        env.pop(name, None)
    return env


def _state(warehouse: Path) -> tuple[int, int, set[str]]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return (
            conn.execute("select count(*) from raw.spend_logs").fetchall()[0][0],
            conn.execute("select count(*) from fct_spend_daily").fetchall()[0][0],
            {row[0] for row in conn.execute("select alert_id from fct_budget_alerts").fetchall()},
        )


def test_make_demo_on_a_fresh_clone_twice(tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)

    started = time.monotonic()
    first = subprocess.run(
        ["make", "demo"],
        cwd=clone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "Simulating 30 days of proxy traffic" in first.stdout
    assert "Spend by team (USD):" in first.stdout
    assert "Budget alerts raised:" in first.stdout
    assert "uv run spendwh ui" in first.stdout
    assert elapsed < 600, f"make demo took {elapsed:.0f} s (target: 10 minutes)"

    warehouse = clone / "data" / "warehouse.duckdb"
    spend_logs, daily_rows, alerts = _state(warehouse)
    assert spend_logs > 100_000
    assert daily_rows > 0
    assert alerts

    second = subprocess.run(
        ["make", "demo"],
        cwd=clone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "reusing the demo proxy" in second.stdout
    again_spend_logs, again_daily_rows, again_alerts = _state(warehouse)
    assert (again_spend_logs, again_daily_rows) == (spend_logs, daily_rows)
    # Same data, same alerts: none lost, none doubled (a projection may add one as time passes).
    assert alerts <= again_alerts
    assert len(again_alerts - alerts) <= 2
