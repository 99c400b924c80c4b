"""The whole job as a user runs it: ``spendwh run`` configured only by a ``.env`` file, and the
marts it publishes, compared between runs on one source."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb

from tests.models.dbt_runner import MARTS
from tests.spendwh import run_spendwh

# the instants of each run's own extraction: the only values two runs on one source differ by
RUN_CLOCK_COLUMNS = {"last_extracted_at", "observed_at"}


def write_env_file(directory: Path, settings: Mapping[str, str]) -> None:
    """``directory/.env`` holding ``settings`` (single-quoted: values may hold spaces)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}='{value}'\n" for name, value in settings.items()]
    (directory / ".env").write_text("".join(lines))


def spendwh_run(directory: Path, settings: Mapping[str, str]) -> Path:
    """``spendwh run`` in ``directory`` with only a ``.env`` of ``settings`` (which names the
    ``SPEND_WAREHOUSE_DIR``); assert it succeeded and return the published warehouse."""
    write_env_file(directory, settings)
    done = run_spendwh(["run"], directory, {}, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Path(settings["SPEND_WAREHOUSE_DIR"]) / "warehouse.duckdb"


def marts(warehouse_path: Path) -> dict[str, list[tuple]]:
    """Every mart of a published warehouse, sorted, without the run-clock columns."""
    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        found = {}
        for mart in MARTS:
            columns = [
                f'"{r[0]}"'
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                    "'main' AND table_name = ? ORDER BY ordinal_position",
                    [mart],
                ).fetchall()
                if r[0] not in RUN_CLOCK_COLUMNS
            ]
            select = f"SELECT {', '.join(columns)} FROM main.{mart} ORDER BY ALL"
            found[mart] = con.execute(select).fetchall()
        return found
    finally:
        con.close()


def assert_same_marts(found: dict[str, list[tuple]], expected: dict[str, list[tuple]]) -> None:
    """Mart by mart (the message names the first that differs)."""
    assert sum(len(rows) for rows in expected.values()) > 100
    for mart in MARTS:
        assert found[mart] == expected[mart], f"{mart} differs"
