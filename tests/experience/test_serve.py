"""``spendwh ui`` and ``spendwh docs``: command lines, instance configuration, and real starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml
from filelock import Timeout

from dagster_project.cli import build_parser
from dagster_project.commands import serve
from dagster_project.lib import dagster_instance
from dagster_project.lib.duckdb import writer_lock
from dagster_project.settings import ConfigError, Settings, load_settings
from tests.experience.processes import URL_PATTERN, start_spendwh, wait_until_answers

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              jobs { name }
              schedules { name cronSchedule scheduleState { status } }
              sensors { name sensorState { status } }
              assetNodes { assetKey { path } description }
            }
          }
        }
      }
    }
  }
}
"""


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return load_settings(env={"SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"), **env})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean user environment: no source, a fresh warehouse directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "DAGSTER_HOME", "DBT_TARGET", "PYTHONPATH"}
    }
    env["SPEND_WAREHOUSE_DIR"] = str(tmp_path / "wh")
    env.update(extra)
    return env


# --- spendwh ui: pure parts -------------------------------------------------------------------


def test_ui_command_runs_dagster_dev_on_the_workspace(tmp_path):
    command = serve.ui_command(tmp_path / "workspace.yaml", "0.0.0.0", 3111)
    assert command[:4] == [sys.executable, "-m", "dagster", "dev"]
    assert command[command.index("--workspace") + 1] == str(tmp_path / "workspace.yaml")
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "3111"


def test_workspace_registers_the_location_under_the_projects_name(tmp_path):
    workspace = yaml.safe_load(serve.workspace_yaml("spend_warehouse", tmp_path / "my repo"))
    [entry] = workspace["load_from"]
    assert entry["python_module"] == {
        "module_name": "dagster_project.definitions",
        "location_name": "spend_warehouse",
        "working_directory": str(tmp_path / "my repo"),
    }
    assert serve.code_location_name() == "spend_warehouse"  # [tool.dg.project] in pyproject
    (tmp_path / "pyproject.toml").write_text('[tool.dg.project]\nroot_module = "x"\n')
    assert serve.code_location_name(tmp_path / "pyproject.toml") == tmp_path.name


def test_ui_environment_points_the_child_at_this_configuration(tmp_path, monkeypatch):
    """The code server runs in the project directory: it gets the absolute .env path and
    warehouse directory, and reads the settings itself (no value passed through the env)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://u:p@db:5432/litellm\n")
    settings = settings_for(tmp_path)
    home = dagster_instance.dagster_home(settings)
    env = serve.ui_environment(settings, {"PATH": "/bin", "DAGSTER_HOME": "/elsewhere"}, home)
    assert env["DAGSTER_HOME"] == str(tmp_path / "wh" / "state" / "dagster")
    assert env["SPEND_WAREHOUSE_DIR"] == str(tmp_path / "wh")
    assert env["SPEND_WAREHOUSE_ENV_FILE"] == str(tmp_path / ".env")
    assert "DATABASE_URL" not in env
    assert env["PATH"] == "/bin"


def test_ui_without_source_or_demo_keeps_the_url_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = settings_for(tmp_path)
    assert serve.resolve_ui_source(settings).database_url is None
    env = serve.ui_environment(settings, {}, tmp_path)
    assert "DATABASE_URL" not in env
    assert "SPEND_WAREHOUSE_ENV_FILE" not in env


def test_url_for_shows_a_browsable_address():
    assert serve.url_for("127.0.0.1", 3000) == "http://127.0.0.1:3000"
    assert serve.url_for("0.0.0.0", 8080) == "http://127.0.0.1:8080"


@pytest.mark.integration
def test_dagster_home_config_is_what_dagster_reads(tmp_path):
    home = dagster_instance.prepare_dagster_home(tmp_path / "dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster_instance.prepare_dagster_home(home)  # an operator's edits are kept
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


# --- spendwh docs: pure parts -----------------------------------------------------------------


def test_docs_generate_args(tmp_path):
    settings = settings_for(tmp_path)
    profiles = tmp_path / "profile"
    args = serve.docs_generate_args(settings, tmp_path / "site", profiles, empty_catalog=False)
    assert args[:2] == ["docs", "generate"]
    assert args[args.index("--target") + 1] == "duckdb"
    assert args[args.index("--target-path") + 1] == str(tmp_path / "site")
    assert args[args.index("--profiles-dir") + 1] == str(profiles)
    assert '"budget_timezone": "UTC"' in args[args.index("--vars") + 1]
    assert "--empty-catalog" not in args
    empty = serve.docs_generate_args(settings, tmp_path, profiles, empty_catalog=True)
    assert "--empty-catalog" in empty
    assert serve.docs_dir(settings) == tmp_path / "wh" / "state" / "dbt-docs"


def test_docs_generate_holds_the_writer_lock_of_the_build_database(tmp_path):
    settings = settings_for(tmp_path)
    with serve.build_database_guard(settings) as has_catalog:
        assert has_catalog is False  # nothing built yet: empty catalog, no file created
    assert not settings.build_path.exists()

    settings.build_path.parent.mkdir(parents=True)
    settings.build_path.touch()
    with serve.build_database_guard(settings) as has_catalog:
        assert has_catalog is True
        with pytest.raises(Timeout):
            writer_lock(settings.build_path, timeout=0.05).acquire()  # a pipeline run waits

    with (
        writer_lock(settings.build_path, timeout=1),  # a pipeline run is writing
        pytest.raises(ConfigError, match="--no-generate"),
        serve.build_database_guard(settings, timeout=0.1),
    ):
        pytest.fail("the guard must not yield while the writer holds the lock")


def test_cli_has_the_ui_and_docs_commands():
    parser = build_parser()
    assert parser.parse_args(["ui", "--port", "3001"]).func is serve.run_ui
    assert parser.parse_args(["docs", "--no-generate"]).func is serve.run_docs


def serve_site(directory: Path) -> tuple[ThreadingHTTPServer, threading.Thread, str]:
    """A one-page site served by ``serve.serve_forever`` in a thread, and its announced URL."""
    (directory / "index.html").write_text("<html>spend warehouse</html>")
    server = serve.docs_server(directory, "127.0.0.1", 0)
    announced: list[str] = []
    thread = threading.Thread(target=serve.serve_forever, args=(server, announced.append))
    thread.start()
    return server, thread, wait_for_announcement(announced)


@pytest.mark.integration
def test_docs_server_serves_the_site_on_a_free_port(tmp_path):
    server, thread, url = serve_site(tmp_path)
    try:
        assert b"spend warehouse" in wait_until_answers(url + "/", timeout=10)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert url.startswith("http://127.0.0.1:")


@pytest.mark.integration
def test_docs_server_stops_despite_an_idle_browser_connection(tmp_path):
    """Browsers open connections they never send a request on; Ctrl-C must not wait for them."""
    server, thread, _ = serve_site(tmp_path)
    with socket.create_connection(server.server_address[:2]):  # preconnected, never used
        time.sleep(0.2)  # the server has accepted it and a handler thread waits for a request
        server.shutdown()
        thread.join(timeout=5)
        assert not thread.is_alive(), "serve_forever did not return while a connection was idle"


def wait_for_announcement(announced: list[str]) -> str:
    for _ in range(100):
        if announced:
            return announced[0]
        time.sleep(0.05)
    raise AssertionError("the server never announced its URL")


@pytest.mark.integration
def test_docs_no_generate_without_a_site_is_a_clean_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster_project.cli", "docs", "--no-generate"],
        env=user_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no generated site" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_docs_on_a_busy_port_fails_before_running_dbt(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "dagster_project.cli", "docs", "--port", str(port)],
            env=user_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "wh" / "state" / "dbt-docs").exists()  # dbt never ran


# --- real starts ------------------------------------------------------------------------------


@pytest.mark.integration
def test_docs_before_any_run_serves_the_project_without_creating_a_database(tmp_path):
    """No build database yet: the site is generated (empty catalog), no empty DuckDB appears."""
    command = start_spendwh("docs", "--port", "0", env=user_env(tmp_path), cwd=tmp_path)
    try:
        url = command.wait_for(URL_PATTERN, timeout=300).group(0)
        manifest = json.loads(wait_until_answers(f"{url}/manifest.json", timeout=30))
        catalog = json.loads(wait_until_answers(f"{url}/catalog.json", timeout=30))
    finally:
        command.stop()
    assert "model.spend_warehouse.fct_spend_daily" in manifest["nodes"]
    assert catalog["nodes"] == {}
    assert "without table statistics" in command.text()
    assert not (tmp_path / "wh" / "state" / "build.duckdb").exists()


@pytest.mark.integration
@pytest.mark.slow  # dagster dev: webserver, daemon and a code server that parses the dbt project
def test_ui_loads_the_code_location_with_schedules_and_sensors(tmp_path):
    port = free_port()
    command = start_spendwh("ui", "--port", str(port), env=user_env(tmp_path), cwd=tmp_path)
    try:
        announced = command.wait_for(URL_PATTERN, timeout=60).group(0)
        assert announced == f"http://127.0.0.1:{port}"
        wait_until_answers(f"{announced}/server_info", timeout=180)
        location = loaded_location(f"{announced}/graphql", timeout=180)
    finally:
        command.stop()
    assert "DATABASE_URL is not set" in command.text()
    assert (tmp_path / "wh" / "state" / "dagster" / "dagster.yaml").is_file()

    [repository] = location["repositories"]
    assets = {"/".join(node["assetKey"]["path"]): node for node in repository["assetNodes"]}
    for key in (
        "raw/spend_logs",
        "staging/stg_proxy__spend_logs",
        "fct_spend_daily",
        "fct_budget_alerts",
    ):
        assert key in assets
    undescribed = sorted(key for key, node in assets.items() if not node["description"])
    assert not undescribed, f"assets without a description: {undescribed}"
    assert {"spend_warehouse_job", "extract_job"} <= {job["name"] for job in repository["jobs"]}
    schedules = {s["name"]: s for s in repository["schedules"]}
    assert schedules["spend_warehouse_schedule"]["cronSchedule"] == "*/15 * * * *"
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert sensors["deliver_budget_alerts"] == "RUNNING"
    assert sensors["alert_on_pipeline_failure"] == "RUNNING"


def loaded_location(graphql_url: str, timeout: float) -> dict:
    """The code location once the webserver has loaded it (a load error fails at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            graphql_url,
            data=json.dumps({"query": WORKSPACE_QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        entries = payload["data"]["workspaceOrError"].get("locationEntries") or []
        if entries and entries[0]["loadStatus"] == "LOADED":
            location = entries[0]["locationOrLoadError"]
            assert location["__typename"] == "RepositoryLocation", location
            return location
        time.sleep(1)
    raise AssertionError(f"the code location did not load within {timeout:.0f} s")
