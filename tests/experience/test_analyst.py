"""Analyst access: the warehouse is found from any working directory and opened read-only."""

from __future__ import annotations

import duckdb
import pytest

from dagster_project.lib.analyst import analyst_settings, open_warehouse


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository root with a ``.env`` naming a relative warehouse dir; cwd elsewhere."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / ".env").write_text("SPEND_WAREHOUSE_DIR=warehouse-data\n")
    monkeypatch.delenv("SPEND_WAREHOUSE_DIR", raising=False)
    monkeypatch.chdir(root / "notebooks")  # where Jupyter starts a notebook's kernel
    return root


def test_settings_are_read_as_from_the_repository_root(repo):
    settings = analyst_settings(repo)
    assert settings.warehouse_dir == repo / "warehouse-data"
    assert settings.warehouse_path == repo / "warehouse-data" / "warehouse.duckdb"


def test_the_environment_wins_over_the_dotenv(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "elsewhere"))
    assert analyst_settings(repo).warehouse_dir == tmp_path / "elsewhere"


def test_missing_warehouse_says_how_to_build_it(repo):
    with pytest.raises(FileNotFoundError, match="make demo"):
        open_warehouse(analyst_settings(repo))


@pytest.mark.integration
def test_the_warehouse_is_opened_read_only(repo):
    settings = analyst_settings(repo)
    settings.warehouse_dir.mkdir()
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        conn.execute("create table fct_spend_daily as select 1.5 as spend_usd")
    conn = open_warehouse(settings)
    try:
        assert conn.execute("select spend_usd from fct_spend_daily").fetchone() == (1.5,)
        with pytest.raises(duckdb.InvalidInputException, match="read-only"):
            conn.execute("create table scratch (x int)")
    finally:
        conn.close()
