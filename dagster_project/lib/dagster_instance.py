"""The persistent Dagster instance that ``spendwh run`` and ``spendwh ui`` share."""

from __future__ import annotations

from pathlib import Path

from dagster_project.settings import Settings

# The instance configuration written on first start (an existing file is never overwritten).
# Every step that writes the build DuckDB declares the pool ``spend_warehouse_writer``.
DAGSTER_YAML = """\
# Written by spendwh on first start; edit freely, it is not overwritten.
concurrency:
  pools:
    # Steps that write the build DuckDB share the pool spend_warehouse_writer: one at a time.
    default_limit: 1
run_monitoring:
  enabled: true
  # A run killed while holding the writer pool's only slot must not block every later run.
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
"""


def dagster_home(settings: Settings) -> Path:
    """The Dagster instance directory: runs, event logs, schedule and sensor state."""
    return settings.state_dir / "dagster"


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with a ``dagster.yaml`` (pool limit) unless one exists; return it."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home
