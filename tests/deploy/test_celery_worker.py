"""Steps on a Celery worker: a scheduled run of the deployed daemon executes on ``spendwh worker``.

Real components, as an operator runs them: ``spendwh deploy`` writes the PostgreSQL-backed
instance, the daemon's unit and the worker's unit; one ``.env`` sets
``SPEND_WAREHOUSE_EXECUTOR=celery`` (the broker and the result backend default to the local
RabbitMQ and Redis) with a queue of this test alone, so that parallel runs of the test never take
each other's steps. The worker starts as its unit says (command line, ``EnvironmentFile=`` and
``Environment=``) under a name of its own, then the daemon as its unit says; its schedule (every
minute, recorded as running since a minute ago so that the daemon's first iteration fires the
last tick instead of waiting up to a minute for the next one) launches the extraction and the
build sensor the build after it; both must succeed with every one of their steps executed in a
child process of that worker (the step events' pid), as the worker's own events say (the Celery
worker's name), sent to the test's queue, and the warehouse published with the source's rows.
With the executor setting ignored, the steps would run in the run worker's process and the test
fails.

RabbitMQ or Redis down fails the test with a sentence naming the service (``.ci/run`` starts them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project.defs.pipeline.schedules import EXTRACTION_TAG
from dagster_project.lib.run_launcher import STARTED_PROCESS_MESSAGE
from dagster_project.lib.workers import unreachable_celery_services
from dagster_project.settings import (
    DEFAULT_CELERY_BACKEND_URL,
    DEFAULT_CELERY_BROKER_URL,
    ExecutorSettings,
)
from tests.deploy.test_deployed import (
    BUILD_JOB,
    SCHEDULE,
    Service,
    free_port,
    kill_processes_of,
    run_table,
    scheduled_runs,
    spendwh_deploy,
    wait_for,
)
from tests.deploy.units import (
    exec_argv,
    parse_unit,
    service_base_env,
    unescape,
    unit_environment,
)
from tests.ingest.helpers import insert_spend, ms, spend_row, utcnow

pytestmark = [pytest.mark.integration]

ROWS = 5
CRON = "* * * * *"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@pytest.fixture
def celery_queue() -> Iterator[ExecutorSettings]:
    """The local RabbitMQ and Redis with a queue of this test, deleted afterwards; RabbitMQ or
    Redis down fails the test (it is what the test is about)."""
    executor = ExecutorSettings(
        name="celery",
        celery_broker_url=DEFAULT_CELERY_BROKER_URL,
        celery_backend_url=DEFAULT_CELERY_BACKEND_URL,
        celery_queue=f"spendwh_test_{uuid.uuid4().hex[:12]}",
    )
    problems = unreachable_celery_services(executor)
    if problems:
        pytest.fail(
            "the Celery worker test needs the local RabbitMQ and Redis: "
            + "; ".join(problems)
            + " (.ci/run starts both)",
            pytrace=False,
        )
    yield executor
    from kombu import Connection

    with Connection(executor.celery_broker_url) as connection:
        channel = connection.channel()
        with contextlib.suppress(Exception):
            channel.queue_delete(executor.celery_queue)
        with contextlib.suppress(Exception):
            channel.exchange_delete(executor.celery_queue)


def schedule_running_for_a_minute(instance: dg.DagsterInstance, workspace: Path) -> None:
    """Record the schedule as running since a minute ago, as a daemon restarted after a minute
    down finds it: its first iteration then fires the tick of the minute that passed instead of
    waiting up to a minute for the next one (the daemon, the code location and the schedule's
    evaluation are the real ones; only the wait is cut)."""
    from dagster._core.definitions.repository_definition.valid_definitions import (
        SINGLETON_REPOSITORY_NAME,
    )
    from dagster._core.remote_origin import RemoteInstigatorOrigin, RemoteRepositoryOrigin
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    [location] = WorkspaceFileTarget(paths=[str(workspace)]).create_origins()
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), SCHEDULE
    )
    instance.add_instigator_state(
        InstigatorState(
            origin,
            InstigatorType.SCHEDULE,
            InstigatorStatus.DECLARED_IN_CODE,
            ScheduleInstigatorData(CRON, time.time() - 60),
        )
    )


def children_of(pid: int) -> set[int]:
    """Pids of the live child processes of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    """The pid of the run's run worker, from its "Started process for run" event."""
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=10_000
    ).records:
        if record.event_log_entry.message.startswith(STARTED_PROCESS_MESSAGE):
            metadata = record.event_log_entry.dagster_event.engine_event_data.metadata
            return int(metadata["pid"].value)
    raise AssertionError(f"run {run_id} has no {STARTED_PROCESS_MESSAGE!r} event")


def steps_ran_on_the_worker(
    instance: dg.DagsterInstance, run_id: str, pool: set[int], worker_node: str, queue: str
) -> set[str]:
    """The steps of ``run_id``, after asserting that each ran and succeeded in the worker's pool
    (not in the run worker the daemon launched), as the worker itself reported, each taken from
    the test's ``queue``."""
    events = [
        r.event_log_entry for r in instance.get_records_for_run(run_id, limit=100_000).records
    ]
    starts = [
        e.dagster_event
        for e in events
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
    ]
    steps = {event.step_key for event in starts}
    orchestrator = run_worker_pid(instance, run_id)
    where = {event.step_key: event.pid for event in starts}
    assert orchestrator not in where.values(), f"steps ran in the run worker: {where}"
    assert set(where.values()) <= pool, (
        f"steps ran outside the worker (pool {sorted(pool)}): {where}"
    )
    succeeded = {
        e.step_key
        for e in events
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    assert succeeded == steps, f"steps that did not succeed: {sorted(steps - succeeded)}"
    executed = {
        e.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
        for e in events
        if "] Executing steps " in e.message and e.message.endswith(" in celery worker")
    }
    assert executed == dict.fromkeys(steps, worker_node), executed
    submitted = [e for e in events if e.message.startswith("Submitting celery task")]
    assert {e.step_key for e in submitted} == steps
    assert all(e.message.endswith(f'to queue "{queue}".') for e in submitted)
    return steps


@pytest.mark.timeout(540)
def test_a_scheduled_run_executes_every_step_on_the_celery_worker(
    make_source, dagster_postgres_url, celery_queue, tmp_path, monkeypatch
):
    source = make_source()
    now = ms(utcnow())
    request_ids = [f"celery-{n}" for n in range(ROWS)]
    insert_spend(
        source,
        [spend_row(rid, now - timedelta(minutes=10 + n)) for n, rid in enumerate(request_ids)],
    )
    home = tmp_path / "dagster-home"
    warehouse = tmp_path / "warehouse" / "warehouse.duckdb"
    env_file = tmp_path / "spendwh.env"
    env_file.write_text(
        "\n".join(
            [
                f"DATABASE_URL={source.url}",
                f"PROXY_TABLE_PREFIX={source.prefix}",
                f"DAGSTER_POSTGRES_URL={dagster_postgres_url}",
                f"SPEND_WAREHOUSE_DIR={warehouse.parent}",
                f"SPEND_WAREHOUSE_SCHEDULE={CRON}",
                "SPEND_WAREHOUSE_EXECUTOR=celery",
                f"SPEND_WAREHOUSE_CELERY_QUEUE={celery_queue.celery_queue}",
                "",
            ]
        )
    )
    base_env = service_base_env()
    spendwh_deploy(home, env_file, base_env, tmp_path, free_port())
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_postgres_url)  # for this test's instance
    daemon = Service(home / "systemd" / "spendwh-daemon.service", tmp_path / "daemon.log")
    worker_name = f"spendwh-test-{uuid.uuid4().hex[:6]}"
    worker_node = f"{worker_name}@{socket.gethostname()}"
    worker_log = tmp_path / "worker.log"
    worker: subprocess.Popen | None = None
    instance: dg.DagsterInstance | None = None

    def worker_tail() -> str:
        return worker_log.read_text(errors="replace")[-4000:] if worker_log.exists() else ""

    try:
        # The worker as its unit says, under a name of its own (parallel runs of the test).
        worker_unit = parse_unit(home / "systemd" / "spendwh-worker.service")
        argv = exec_argv(worker_unit)
        argv[argv.index("--name") + 1] = worker_name
        with worker_log.open("w") as log:
            worker = subprocess.Popen(
                argv,
                env=unit_environment(worker_unit, base_env),
                cwd=unescape(worker_unit["WorkingDirectory"][0]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # The daemon, as its unit says; its schedule launches the run.
        instance = dg.DagsterInstance.from_config(str(home))
        schedule_running_for_a_minute(instance, home / "workspace.yaml")
        daemon.start(base_env)
        wait_for(
            lambda: worker.poll() is not None or f"{worker_node} ready" in worker_tail(),
            60,
            lambda: f"the worker did not get ready:\n{worker_tail()}",
        )
        assert worker.poll() is None, f"the worker exited:\n{worker_tail()}"
        pool = children_of(worker.pid)
        assert pool, f"the worker has no pool process:\n{worker_tail()}"

        def explain(what: str):
            return lambda: (
                f"{what}\nscheduled runs:\n{run_table(scheduled_runs(instance))}\n"
                f"daemon log tail:\n{daemon.tail()}\nworker log tail:\n{worker_tail()}"
            )

        # The schedule's extraction, then the build the build sensor launched after it.
        [build, *_] = wait_for(
            lambda: [
                r
                for r in scheduled_runs(instance)
                if r.dagster_run.job_name == BUILD_JOB and r.dagster_run.status in FINISHED
            ],
            300,
            explain("a build run to finish"),
        )
        extraction = instance.get_run_record_by_id(build.dagster_run.tags[EXTRACTION_TAG])
        steps: set[str] = set()
        for record in (extraction, build):
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, explain("run failed")()
            steps |= steps_ran_on_the_worker(
                instance,
                record.dagster_run.run_id,
                pool | children_of(worker.pid),
                worker_node,
                celery_queue.celery_queue,
            )
        assert len(steps) >= 4, f"too few steps ran: {sorted(steps)}"
        assert any("dbt" in step for step in steps), sorted(steps)

        # The warehouse was built and published, with the source's rows.
        with duckdb.connect(str(warehouse), read_only=True) as con:
            stored = {r for (r,) in con.execute("select request_id from raw.spend_logs").fetchall()}
            marts = con.execute(
                "select count(*) from information_schema.tables "
                "where table_name = 'fct_spend_daily'"
            ).fetchone()[0]
        assert stored == set(request_ids)
        assert marts == 1, "fct_spend_daily was not published"
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown, as Ctrl-C
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        if worker is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)  # pool processes left in the group
        daemon.kill(signal.SIGTERM)
        kill_processes_of(home)
        if instance is not None:
            instance.dispose()
