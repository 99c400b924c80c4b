"""``spendwh deploy``: the instance, workspace and systemd units it writes, read as systemd does."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dagster_project.cli import main
from dagster_project.commands import deploy
from dagster_project.lib import dagster_instance
from dagster_project.settings import REPO_ROOT, ConfigError
from tests.deploy.units import exec_argv, parse_unit, unit_environment

VENV_BIN = Path(sys.executable).parent
USER = getpass.getuser()  # "nobody" would make systemd-analyze warn


def deployment(tmp_path: Path, **kwargs) -> deploy.Deployment:
    values = {
        "home": tmp_path / "home",
        "env_file": tmp_path / "spendwh.env",
        "user": USER,
        "port": 3111,
        "docs_port": 8111,
    }
    return deploy.Deployment(**{**values, **kwargs})


def verify_units(paths: list[Path]) -> None:
    """``systemd-analyze verify`` finds nothing to say about ``paths`` (skipped without it)."""
    if shutil.which("systemd-analyze") is None:
        return
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = [line for line in result.stderr.splitlines() if any(p.name in line for p in paths)]
    assert result.returncode == 0, result.stderr
    assert not mine, result.stderr


def test_deploy_writes_the_instance_workspace_and_three_units(tmp_path):
    plan = deployment(tmp_path)
    written = deploy.write_deployment(plan)
    home = plan.home
    units = [home / "systemd" / name for name in deploy.UNITS]
    assert written == [home / "dagster.yaml", home / "workspace.yaml", *units]
    assert (home / "dagster.yaml").read_text() == dagster_instance.instance_yaml(
        "DAGSTER_POSTGRES_URL", written_by="deploy"
    )
    [location] = yaml.safe_load((home / "workspace.yaml").read_text())["load_from"]
    assert location["python_module"] == {
        "module_name": "dagster_project.definitions",
        "location_name": "spend_warehouse",
        "working_directory": str(REPO_ROOT),
    }
    verify_units(units)

    daemon, webserver, docs = (parse_unit(path) for path in units)
    workspace = str(home / "workspace.yaml")
    assert exec_argv(daemon) == [str(VENV_BIN / "dagster-daemon"), "run", "-w", workspace]
    assert exec_argv(webserver) == [
        *(str(VENV_BIN / "dagster-webserver"), "-w", workspace),
        *("-h", "127.0.0.1", "-p", "3111"),
    ]
    assert exec_argv(docs) == [
        *(str(VENV_BIN / "spendwh"), "docs"),
        *("--host", "127.0.0.1", "--port", "8111"),
    ]
    for unit in (daemon, webserver, docs):
        assert os.access(exec_argv(unit)[0], os.X_OK)
        assert unit["WorkingDirectory"] == [str(REPO_ROOT)]
        assert unit["EnvironmentFile"] == [f"-{tmp_path / 'spendwh.env'}"]
        assert unit["Restart"] == ["always"]
        assert unit["User"] == [USER]
        assert unit["WantedBy"] == ["multi-user.target"]
        env = unit_environment(unit, {})
        assert env["SPEND_WAREHOUSE_ENV_FILE"] == str(tmp_path / "spendwh.env")
    for unit in (daemon, webserver):  # the two Dagster processes share the instance
        assert unit_environment(unit, {})["DAGSTER_HOME"] == str(home)


def test_a_celery_deployment_gets_a_worker_unit_that_stops_warm(tmp_path):
    plan = deployment(tmp_path)
    plan.env_file.write_text("SPEND_WAREHOUSE_EXECUTOR=celery\n")
    written = deploy.write_deployment(plan)
    worker_unit = plan.home / "systemd" / deploy.WORKER_UNIT
    assert worker_unit in written
    verify_units([worker_unit])
    worker = parse_unit(worker_unit)
    assert exec_argv(worker) == [str(VENV_BIN / "spendwh"), "worker", "--name", "spendwh"]
    assert worker["KillMode"] == ["mixed"]  # SIGTERM to the worker only: a warm shutdown
    assert worker["TimeoutStopSec"] == [str(deploy.WORKER_STOP_SECONDS)]
    assert worker["Restart"] == ["always"]
    env = unit_environment(worker, {})
    assert env["SPEND_WAREHOUSE_ENV_FILE"] == str(plan.env_file)
    assert env["DAGSTER_HOME"] == str(plan.home)
    assert deploy.WORKER_UNIT.removesuffix(".service") in deploy.next_steps(plan)

    plan.env_file.write_text("SPEND_WAREHOUSE_EXECUTOR=multiprocess\n")
    assert worker_unit.parent / deploy.WORKER_UNIT not in deploy.write_deployment(plan, force=True)


def test_units_quote_paths_with_spaces_and_percent_signs(tmp_path):
    """A project or DAGSTER_HOME under 'My Files 100%' must still start (systemd splits on
    spaces and expands % specifiers)."""
    odd = tmp_path / "My Files 100%"
    bin_dir = odd / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("dagster-daemon", "dagster-webserver", "spendwh"):
        (bin_dir / name).symlink_to(VENV_BIN / name)
    plan = deployment(tmp_path, home=odd / "home", env_file=odd / ".env", bin_dir=bin_dir)
    deploy.write_deployment(plan)
    units = [plan.home / "systemd" / name for name in deploy.UNITS]
    verify_units(units)  # a badly quoted ExecStart names an executable that does not exist
    daemon = parse_unit(units[0])
    assert exec_argv(daemon) == [
        str(bin_dir / "dagster-daemon"),
        *("run", "-w", str(plan.home / "workspace.yaml")),
    ]
    env = unit_environment(daemon, {})
    assert env["DAGSTER_HOME"] == str(plan.home)
    assert env["SPEND_WAREHOUSE_ENV_FILE"] == str(odd / ".env")


def test_deploy_refuses_to_overwrite_a_deployment_without_force(tmp_path, capsys):
    home = tmp_path / "home"
    args = ["deploy", str(home), "--env-file", str(tmp_path / ".env")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert str(home / "systemd" / "spendwh-daemon.service") in out
    assert "sudo systemctl enable --now spendwh-daemon spendwh-webserver spendwh-docs" in out
    assert "it does not exist yet" in out  # the .env still has to be written
    (home / "dagster.yaml").write_text("# the operator's edits\n")

    assert main(args) == 2
    [error] = capsys.readouterr().err.strip().splitlines()
    assert error == (
        f"spendwh: configuration error: {home / 'dagster.yaml'} exists (a deployment is there "
        "already); pass --force to overwrite it and the units, or pick another DIR."
    )
    assert (home / "dagster.yaml").read_text() == "# the operator's edits\n"

    assert main([*args, "--force", "--dagster-postgres-url-env", "PG_FOR_DAGSTER"]) == 0
    assert "env: PG_FOR_DAGSTER" in (home / "dagster.yaml").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"postgres_url_env": "DAGSTER-URL"}, "is not a variable name"),
        ({"user": "two words"}, "is not a user name"),
        ({"port": 70000}, "--port 70000 is not a TCP port"),
        ({"docs_port": 3111}, "are both 3111"),
        ({"bin_dir": Path("/nonexistent/bin")}, "run 'make install'"),
    ],
)
def test_deploy_rejects_what_cannot_work(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        deploy.write_deployment(deployment(tmp_path, **change))
    assert not (tmp_path / "home" / "dagster.yaml").exists()


def test_deploy_refuses_an_instance_url_without_the_psycopg2_driver(tmp_path):
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3, on which dagster-postgres fails."""
    env = tmp_path / "spendwh.env"
    env.write_text("DAGSTER_POSTGRES_URL=postgresql://dagster@db:5432/dagster\n")
    with pytest.raises(ConfigError, match=r"must start with postgresql\+psycopg2://"):
        deploy.write_deployment(deployment(tmp_path))
    env.write_text("DAGSTER_POSTGRES_URL=postgresql+psycopg2://dagster@db:5432/dagster\n")
    assert deploy.write_deployment(deployment(tmp_path))
