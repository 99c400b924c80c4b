"""A run whose process died is found dead and failed by Dagster's run monitoring.

Unit tests of the health judgement on real processes (alive, reaped, zombie, reused pid), then
the whole path: ``spendwh run`` killed with SIGKILL in the middle of its run leaves the run
``STARTED``; a real ``dagster-daemon`` marks it failed, the run-failure sensor opens a
pipeline-health alert, and the next ``spendwh run`` succeeds and publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData

from dagster_project.commands.serve import write_workspace
from dagster_project.lib.alerts.ledger import connect_ledger, ledger_path
from dagster_project.lib.dagster_instance import RUN_LAUNCHER_MODULE, prepare_dagster_home
from dagster_project.lib.ingest.lake import PAUSE_ENV, PAUSE_FILE_ENV
from dagster_project.lib.run_launcher import (
    LocalRunLauncher,
    WorkerProcess,
    process_started_at,
    worker_health,
)
from dagster_project.simulator import simulate

pytestmark = pytest.mark.integration  # real processes, and a daemon below

HOST = "this-host"
BIN = Path(sys.executable).parent


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_live_worker_is_running_and_a_reaped_one_failed():
    process = _sleeper()
    try:
        started = process_started_at(process.pid)
        assert started is not None
        assert abs(started - time.time()) < 30
        alive = worker_health(WorkerProcess(process.pid, HOST, time.time()), HOST)
        assert alive.status.value == "RUNNING"
    finally:
        process.kill()
        process.wait()
    dead = worker_health(WorkerProcess(process.pid, HOST, time.time()), HOST)
    assert dead.status.value == "FAILED"
    assert str(process.pid) in dead.msg


def test_a_killed_but_unreaped_worker_counts_as_dead():
    process = _sleeper()
    process.kill()
    deadline = time.monotonic() + 10
    while process_started_at(process.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # the zombie appears once the signal is delivered
    try:
        assert Path(f"/proc/{process.pid}").exists()  # not reaped: a zombie
        assert worker_health(WorkerProcess(process.pid, HOST, time.time()), HOST).status.value == (
            "FAILED"
        )
    finally:
        process.wait()


def test_a_pid_reused_by_a_later_process_is_not_the_worker():
    process = _sleeper()
    try:
        announced_before_it_started = process_started_at(process.pid) - 60
        health = worker_health(WorkerProcess(process.pid, HOST, announced_before_it_started), HOST)
        assert health.status.value == "FAILED"
        assert "another process" in health.msg
    finally:
        process.kill()
        process.wait()


def test_unknown_or_remote_workers_are_left_alone():
    assert worker_health(None, HOST).status.value == "RUNNING"
    remote = WorkerProcess(os.getpid() + 10_000_000, "elsewhere", time.time())
    assert worker_health(remote, HOST).status.value == "RUNNING"


def test_a_daemon_launched_run_is_judged_by_the_pid_its_worker_announced(tmp_path):
    """The worker of a launched run reports "Started process for run (pid: N)." as the code
    server does (dagster/_grpc/impl.py); the launcher finds that pid in the event log."""

    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def tiny():
        noop()

    overrides = {"run_launcher": {"module": RUN_LAUNCHER_MODULE, "class": "LocalRunLauncher"}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        run = tiny.execute_in_process(instance=instance).dagster_run
        assert instance.run_launcher.check_run_worker_health(run).msg == (
            "no worker pid recorded yet"
        )
        worker = _sleeper()
        try:
            instance.report_engine_event(
                f"Started process for run (pid: {worker.pid}).",
                run,
                EngineEventData.in_process(worker.pid),
            )
            alive = instance.run_launcher.check_run_worker_health(run)
            assert alive.status.value == "RUNNING", alive
        finally:
            worker.kill()
            worker.wait()
        dead = instance.run_launcher.check_run_worker_health(run)
        assert dead.status.value == "FAILED", dead
        assert str(worker.pid) in dead.msg


# --- the whole path -----------------------------------------------------------------------------


def _env(tmp_path: Path, source) -> dict[str, str]:
    """A user's environment as cron gives it: no virtualenv on PATH, settings in a .env."""
    dotenv = tmp_path / "spendwh.env"
    dotenv.write_text(
        f"DATABASE_URL={source.url}\n"
        f"PROXY_TABLE_PREFIX={source.prefix}\n"
        f"SPEND_WAREHOUSE_DIR={tmp_path / 'wh'}\n"
        "SPEND_WAREHOUSE_SCHEDULE=0 0 1 1 *\n"  # no scheduled run during the test
    )
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SPEND_WAREHOUSE_ENV_FILE": str(dotenv),
        "PYTHONUNBUFFERED": "1",
    }


def _start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``command`` in its own process group, its output appended to ``log``."""
    with open(log, "a") as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for(what: str, predicate, timeout: float, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s\n{tail}")


@pytest.mark.slow
def test_killed_spendwh_run_is_failed_by_run_monitoring_and_the_next_run_succeeds(
    make_source, tmp_path
):
    source = make_source()
    simulate(source.url, source.prefix, seed=5, days=1, requests_per_day=400)
    env = _env(tmp_path, source)
    home = prepare_dagster_home(tmp_path / "wh" / "state" / "dagster")
    env["DAGSTER_HOME"] = str(home)
    log, daemon_log = tmp_path / "spendwh-run.log", tmp_path / "daemon.log"
    marker = tmp_path / "paused"
    victim_env = {**env, PAUSE_ENV: "mid_read", PAUSE_FILE_ENV: str(marker)}
    victim = _start([str(BIN / "spendwh"), "run"], victim_env, tmp_path, log)
    # the server's daemon, running beside the manual run
    daemon_command = [str(BIN / "dagster-daemon"), "run", "-w", str(write_workspace(home))]
    daemon = _start(daemon_command, env, tmp_path, daemon_log)
    try:
        _wait_for("the run pausing in the middle of reading spend logs", marker.exists, 180, log)
        _wait_for(
            "the run-failure sensor's first tick",
            lambda: "Initiating alert_on_pipeline_failure" in daemon_log.read_text(),
            120,
            daemon_log,
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_launcher, LocalRunLauncher)
            [run] = instance.get_runs()
            assert run.status == dg.DagsterRunStatus.STARTED
            assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            assert instance.run_launcher.check_run_worker_health(run).status.value == "FAILED"
            _wait_for(
                "run monitoring marking the killed run failed",
                lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
                150,
                daemon_log,
            )

            def health_alert() -> bool:
                ledger = ledger_path(tmp_path / "wh" / "state")
                if not ledger.exists():
                    return False
                conn = connect_ledger(ledger)
                try:
                    keys = {r[0] for r in conn.execute("select problem_key from health_events")}
                finally:
                    conn.close()
                return f"run:{run.job_name}" in keys  # extract_job: killed reading spend logs

            _wait_for(
                "the run-failure sensor's pipeline-health alert", health_alert, 90, daemon_log
            )
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        daemon = None

        # Without a daemon, a second killed run is recovered by the next 'spendwh run' itself:
        # marked failed, its slot (and the first run's, which the daemon had no time to free)
        # released, and the run proceeds and publishes.
        marker.unlink()
        victim = _start([str(BIN / "spendwh"), "run"], victim_env, tmp_path, log)
        _wait_for("the second run pausing", marker.exists, 180, log)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        rerun = subprocess.run(
            [str(BIN / "spendwh"), "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
        assert "died (its process was killed) and was marked failed" in rerun.stdout
        assert (tmp_path / "wh" / "warehouse.duckdb").exists()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = sorted((r.job_name, r.status.value) for r in instance.get_runs())
        # the two killed extractions, then the rerun's extraction and the build after it
        assert runs == [
            ("build_job", "SUCCESS"),
            ("extract_job", "FAILURE"),
            ("extract_job", "FAILURE"),
            ("extract_job", "SUCCESS"),
        ]
    finally:
        for process in (victim, daemon):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
