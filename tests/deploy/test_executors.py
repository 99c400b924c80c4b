"""The executor every job uses is the one ``SPEND_WAREHOUSE_EXECUTOR`` names, and a worker meets
the runs on the same broker and queue (the run on a real worker: ``test_celery_worker.py``)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from dagster_project.cli import main
from dagster_project.lib import workers
from dagster_project.settings import REPO_ROOT, executor_from

JOBS = ("spend_warehouse_job", "extract_job", "build_job", "spend_warehouse_rollback_job")


@pytest.mark.parametrize(
    ("value", "executor"),
    [("", "in_process"), ("in_process", "in_process"), ("multiprocess", "multiprocess")],
)
def test_the_setting_names_the_executor(value, executor):
    assert workers.executor_def(executor_from({"SPEND_WAREHOUSE_EXECUTOR": value})).name == executor


def test_celery_binds_the_broker_backend_and_queue_of_the_settings():
    settings = executor_from(
        {
            "SPEND_WAREHOUSE_EXECUTOR": "celery",
            "SPEND_WAREHOUSE_CELERY_BROKER_URL": "amqp://u:p@mq:5672//",
            "SPEND_WAREHOUSE_CELERY_QUEUE": "spendwh_prod",
        }
    )
    definition = workers.executor_def(settings)
    assert definition.name == "celery"
    app = workers.worker_app(settings)
    assert app.conf.broker_url == "amqp://u:p@mq:5672//"
    assert app.conf.result_backend == "redis://127.0.0.1:6379/0"
    assert app.conf.task_default_queue == "spendwh_prod"
    assert "execute_plan" in app.tasks  # dagster-celery's step task
    argv = workers.worker_argv(settings, "w1", concurrency=2)
    assert argv[:5] == [
        "worker",
        "--queues=spendwh_prod",
        "--hostname=w1@%h",
        "--concurrency=2",
        "--prefetch-multiplier=1",
    ]


def test_worker_refuses_when_runs_keep_their_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPEND_WAREHOUSE_ENV_FILE", raising=False)
    monkeypatch.setenv("SPEND_WAREHOUSE_EXECUTOR", "multiprocess")
    assert main(["worker"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("spendwh: configuration error: SPEND_WAREHOUSE_EXECUTOR is multiprocess")
    assert "set SPEND_WAREHOUSE_EXECUTOR=celery" in line


def test_worker_says_which_service_does_not_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPEND_WAREHOUSE_ENV_FILE", raising=False)
    monkeypatch.setenv("SPEND_WAREHOUSE_EXECUTOR", "celery")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("SPEND_WAREHOUSE_CELERY_BROKER_URL", f"amqp://u:secret@127.0.0.1:{port}//")
    monkeypatch.setenv("SPEND_WAREHOUSE_CELERY_BACKEND_URL", f"redis://127.0.0.1:{port}/0")
    assert main(["worker"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"SPEND_WAREHOUSE_CELERY_BROKER_URL at 127.0.0.1:{port} does not answer" in line
    assert f"SPEND_WAREHOUSE_CELERY_BACKEND_URL at 127.0.0.1:{port} does not answer" in line
    assert "secret" not in line


@pytest.mark.integration
def test_every_job_of_the_code_location_uses_the_configured_executor(tmp_path):
    """Loaded in a fresh process from a .env, as the daemon and the run workers load it."""
    env_file = tmp_path / "spendwh.env"
    env_file.write_text("SPEND_WAREHOUSE_EXECUTOR=celery\nSPEND_WAREHOUSE_CELERY_QUEUE=q1\n")
    script = (
        "from dagster_project.definitions import defs\n"
        "d = defs()\n"
        f"print(sorted({{d.resolve_job_def(j).executor_def.name for j in {JOBS!r}}}))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SPEND_WAREHOUSE_ENV_FILE": str(env_file),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['celery']"
