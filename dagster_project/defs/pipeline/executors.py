"""The executor of every job of the code location, named by ``SPEND_WAREHOUSE_EXECUTOR``.

- ``in_process`` (default): every step in the run worker's own process, as ``spendwh run`` does:
  the steps take turns on one DuckDB file anyway, dbt runs as a child process, and a process per
  step costs more start-up than the steps' own work on a small warehouse;
- ``multiprocess``: a child process of the run worker per step;
- ``celery``: each step a Celery task on ``SPEND_WAREHOUSE_CELERY_QUEUE`` of the broker, run by
  ``spendwh worker`` processes (:mod:`dagster_project.lib.workers`).

Read when the definitions load, like the cron schedules: the daemon, the UI and every run worker
load them from the same ``.env``. ``spendwh run`` executes in process whatever the setting says.
"""

import dagster as dg

from dagster_project.lib.workers import executor_def
from dagster_project.settings import config_values, executor_from


@dg.definitions
def executors() -> dg.Definitions:
    """The jobs' executor (no job names its own, so all of them use this one)."""
    return dg.Definitions(executor=executor_def(executor_from(config_values())))
