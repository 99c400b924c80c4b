"""Analyst access to the published warehouse from any working directory (notebooks, scripts).

Jupyter starts a kernel in the notebook's folder, where ``.env`` and the default ``./data`` of
:func:`dagster_project.settings.load_settings` would point at the wrong place; these helpers read
the settings as ``spendwh`` sees them from the repository root, and open the published copy
``warehouse.duckdb`` read-only, so an analyst never blocks the pipeline's writer.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from dagster_project.settings import REPO_ROOT, Settings, load_settings


def analyst_settings(root: Path = REPO_ROOT) -> Settings:
    """The settings as seen from ``root``: its ``.env``, relative paths resolved from it."""
    with contextlib.chdir(root):
        return load_settings()


def open_warehouse(settings: Settings | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published warehouse, or an error that says how to build it."""
    path = (settings or analyst_settings()).warehouse_path
    if not path.is_file():
        raise FileNotFoundError(
            f"no warehouse at {path}; build it with 'make demo' or 'uv run spendwh run', "
            "or point SPEND_WAREHOUSE_DIR at the directory that holds warehouse.duckdb"
        )
    return duckdb.connect(str(path), read_only=True)
