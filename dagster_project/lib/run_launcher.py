"""A run launcher whose run workers Dagster's run monitoring can check: dead runs end as failed.

Dagster's :class:`~dagster.DefaultRunLauncher` starts each run worker as a local process but
cannot tell the daemon's run monitoring whether that process still lives, so a run whose worker
was killed (``kill -9``, an OOM kill, a host reboot) stays ``STARTED`` forever and keeps its
concurrency-pool slot. :class:`LocalRunLauncher` is the default launcher plus the health check
run monitoring asks for (``check_run_worker_health``): the run worker announces its pid in the
engine event "Started process for run (pid: N)"; an in-process run (``spendwh run``) carries its
pid in the run tags :data:`PID_TAG` and :data:`HOST_TAG`. A pid that no longer runs, or that
now belongs to a process started after the run's worker, means the worker died; run
monitoring then marks the run failed, the run-failure sensor raises a pipeline-health alert and
``free_slots_after_run_end_seconds`` frees its pool slot.

Configured in ``dagster.yaml`` (see :mod:`dagster_project.lib.dagster_instance`)::

    run_launcher:
      module: dagster_project.lib.run_launcher
      class: LocalRunLauncher

It assumes the run workers run on the machine of the daemon, as they do with code locations
loaded from ``workspace.yaml`` by module; a run launched on another host is never judged dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

PID_TAG = "spendwh/pid"
HOST_TAG = "spendwh/host"
STARTED_PROCESS_MESSAGE = "Started process for run (pid: "


@dataclass(frozen=True)
class WorkerProcess:
    """Where a run's worker runs: its pid, host, and when it announced itself (epoch s)."""

    pid: int
    host: str
    announced_at: float


def process_started_at(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Start time (epoch seconds) of live process ``pid``; None when it is gone or a zombie."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in {"Z", "X"}:  # a zombie: killed, not yet reaped by its parent
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_health(worker: WorkerProcess | None, this_host: str) -> CheckRunHealthResult:
    """The health of a run worker, judged on this host."""
    if worker is None:
        return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded yet")
    if worker.host != this_host:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker runs on {worker.host}")
    started = process_started_at(worker.pid)
    if started is None:
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {worker.pid} is gone (killed or crashed)"
        )
    if started > worker.announced_at + 1.0:  # the pid was reused by a later process
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {worker.pid} is gone; its pid now belongs to another process",
        )
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker process {worker.pid} is alive")


class LocalRunLauncher(dg.DefaultRunLauncher):
    """:class:`~dagster.DefaultRunLauncher` with run-worker health checks for run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        return worker_health(self._worker(run), socket.gethostname())

    def _worker(self, run: dg.DagsterRun) -> WorkerProcess | None:
        """The run's worker process: from its tags (in-process runs) or its engine event."""
        if PID_TAG in run.tags:
            record = self._instance.get_run_record_by_id(run.run_id)
            started = record.start_time if record and record.start_time else 0.0
            return WorkerProcess(int(run.tags[PID_TAG]), run.tags.get(HOST_TAG, ""), started)
        records = self._instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
        ).records
        for record in reversed(records):  # the newest announcement (a resumed run has several)
            entry = record.event_log_entry
            if entry.message.startswith(STARTED_PROCESS_MESSAGE):  # the DagsterEvent's message
                pid = entry.dagster_event.engine_event_data.metadata["pid"].value
                return WorkerProcess(int(pid), socket.gethostname(), entry.timestamp)
        return None


def in_process_run_tags() -> dict[str, str]:
    """Tags that let run monitoring check an in-process run (``spendwh run``) like a worker."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """What the daemon's run monitoring does, for a machine where no daemon runs.

    Marks failed every ``STARTED`` run whose worker is dead, and frees the concurrency-pool
    slots still claimed by runs that have ended, so a killed ``spendwh run`` never blocks the
    next one. Returns the ids of the runs marked failed. A run whose worker lives is untouched.
    """
    launcher = instance.run_launcher
    failed: list[str] = []
    if launcher.supports_check_run_worker_health:
        started = instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        )
        for record in started:
            health = launcher.check_run_worker_health(record.dagster_run)
            if health.status == WorkerStatus.FAILED:
                instance.report_run_failed(record.dagster_run, f"{health.msg}; marked failed")
                failed.append(record.dagster_run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = storage.get_concurrency_run_ids()
        if holders:
            ended = instance.get_run_records(
                filters=dg.RunsFilter(
                    run_ids=list(holders),
                    statuses=[
                        dg.DagsterRunStatus.FAILURE,
                        dg.DagsterRunStatus.CANCELED,
                        dg.DagsterRunStatus.SUCCESS,
                    ],
                )
            )
            for record in ended:
                storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return failed
