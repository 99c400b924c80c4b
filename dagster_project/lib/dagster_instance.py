"""The persistent Dagster instance: ``dagster.yaml`` for local use and for a production server.

- Local (``spendwh run``, ``spendwh ui``): runs, event logs and schedules in SQLite files under
  ``DAGSTER_HOME`` (Dagster's layout), written on first start and never overwritten; the event
  log keeps its connections open (:mod:`dagster_project.lib.dagster_storage`).
- Production (``spendwh deploy``): the same instance, with its storage in PostgreSQL
  (dagster-postgres) so that the webserver and the daemon, two services, share it safely.

Both launch runs with :class:`dagster_project.lib.run_launcher.LocalRunLauncher` (a run worker
process per run, whose health run monitoring checks) and enable run monitoring: a run whose
worker died (an OOM kill) is marked failed, and the slots it held in the writer pool are freed,
so the next scheduled run proceeds instead of waiting forever.
"""

from __future__ import annotations

import json
from pathlib import Path

from dagster_project.settings import Settings

DEFAULT_POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"
# dagster-postgres is built on psycopg2; SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3,
# on which its NOTIFY statements fail, so the instance URL names the driver.
POSTGRES_URL_SCHEME = "postgresql+psycopg2"
RUN_LAUNCHER_MODULE = "dagster_project.lib.run_launcher"
RUN_LAUNCHER_CLASS = "LocalRunLauncher"
EVENT_LOG_MODULE = "dagster_project.lib.dagster_storage"
EVENT_LOG_CLASS = "PooledSqliteEventLogStorage"

_HEADER = "# Written by spendwh {written_by}; edit freely, it is not overwritten.\n"

_POSTGRES_STORAGE = """\
# Runs, event logs, schedule and sensor state in PostgreSQL (dagster-postgres); the URL comes
# from the environment (the .env file of the systemd units), never from this file, and starts
# with {scheme}:// (dagster-postgres needs psycopg2; postgresql:// would mean psycopg 3).
storage:
  postgres:
    postgres_url:
      env: {url_env}
"""

_LOCAL_EVENT_LOG = """\
# Event logs in SQLite files, where Dagster keeps them, written through open connections
# (Dagster's own storage opens a new one for every event).
event_log_storage:
  module: {module}
  class: {cls}
  config:
    base_dir: {base_dir}
"""

_COMMON = f"""\
concurrency:
  runs:
    # One pipeline run at a time; a scheduled run that comes due meanwhile waits in the queue.
    max_concurrent_runs: 1
  pools:
    # Steps that write the build DuckDB share the pool spend_warehouse_writer: one at a time.
    default_limit: 1
run_launcher:
  # One run worker process per run, whose health run monitoring can check.
  module: {RUN_LAUNCHER_MODULE}
  class: {RUN_LAUNCHER_CLASS}
run_monitoring:
  enabled: true
  # A run that does not start, or does not stop when cancelled, within 3 minutes is failed.
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  # A run whose worker died (killed, out of memory) is marked failed, not resumed: the next
  # scheduled run starts over from the last committed watermark.
  max_resume_run_attempts: 0
  poll_interval_seconds: 20
  # ... and the writer pool slot it held is freed, so it does not block every later run.
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
"""


def instance_yaml(
    postgres_url_env: str | None = None,
    written_by: str = "on first start",
    *,
    home: Path | None = None,
) -> str:
    """The ``dagster.yaml`` text: PostgreSQL storage at the URL in ``postgres_url_env``, else
    SQLite storage under ``DAGSTER_HOME``, whose event log, given the instance's ``home``, is
    :class:`~dagster_project.lib.dagster_storage.PooledSqliteEventLogStorage`."""
    if postgres_url_env is not None:
        storage = _POSTGRES_STORAGE.format(url_env=postgres_url_env, scheme=POSTGRES_URL_SCHEME)
    elif home is not None:
        runs = json.dumps(str((home / "history" / "runs").resolve()))  # a quoted YAML scalar
        storage = _LOCAL_EVENT_LOG.format(
            module=EVENT_LOG_MODULE, cls=EVENT_LOG_CLASS, base_dir=runs
        )
    else:
        storage = ""
    return _HEADER.format(written_by=written_by) + storage + _COMMON


def dagster_home(settings: Settings) -> Path:
    """The Dagster instance directory: runs, event logs, schedule and sensor state."""
    return settings.state_dir / "dagster"


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with a local ``dagster.yaml`` unless one exists; return it.

    A ``dagster.yaml`` still exactly as an earlier version wrote it (before the pooled event
    log) is brought up to date; one the user edited is left alone.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() == instance_yaml():
        config.write_text(instance_yaml(home=home))
    return home
