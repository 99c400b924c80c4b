"""The dbt CLI the pipeline runs: the profile and vars come from the run's settings.

dbt runs as a child process. Instead of passing the settings through environment variables, the
dbt assets write the profile for this run (``<state>/dbt/profiles.yml``, readable only by its
owner: it may hold the target's password) and pass the settings dbt models read as ``--vars``.
The committed ``dbt/profiles.yml`` (``env_var()`` with defaults) is for running dbt by hand and
for the SQL linter; a test keeps the two profiles alike.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.core.dbt_cli_invocation import PARTIAL_PARSE_FILE_NAME, _get_dbt_target_path
from packaging.version import Version

from dagster_project.settings import Settings

PROFILE_NAME = "spend_warehouse"
# One model at a time on DuckDB: each query already runs on SPEND_WAREHOUSE_DUCKDB_THREADS
# threads, and models built side by side share one memory limit and one spill directory. With 4,
# the first build at 10 M rows filled a 40 GB disk with spill files; with 2 it took 157 s.
DUCKDB_THREADS = 2
POSTGRES_THREADS = 2
# dagster-dbt gives every dbt command its own folder (about 12 MB after a build: manifest,
# compiled SQL, dbt.log), and nothing removed them: at a build every 15 minutes, 1 GB a day. The
# last few stay for a look at their dbt.log and run_results.json; a folder written to within the
# last hour stays too (a build of another warehouse from the same project may be running in it).
KEPT_BUILD_FOLDERS = 5
BUILD_FOLDER_IDLE_SECONDS = 3600


class ProjectDbtCli(DbtCliResource):
    """dagster-dbt's CLI resource without two costs of every command the project does not use.

    Before each command, :class:`DbtCliResource` runs ``dbt --version`` in a subprocess and opens
    a dbt adapter in this process (loading every macro of the project), for the column metadata
    and row counts it can fetch through that adapter. Together about 2.7 s a build on 2 cores.
    The project fetches neither: the dbt asset counts rows itself once dbt has exited
    (``with_row_counts``). So the version is read from the installed ``dbt-core`` package when
    the executable is the one beside this Python, and no adapter is opened.
    """

    @cached_property
    def _cli_version(self) -> Version:
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            return Version(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)  # another dbt: ask it

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # ty: ignore[invalid-method-override]
        return None


def keep_partial_parse(target_path: str | Path, project: DbtProject) -> None:
    """Keep a finished command's parse (``partial_parse.msgpack``) for the next command.

    dagster-dbt gives each command its own target directory and copies the parse it finds in
    its own target folder (``DBT_TARGET_PATH``, by default the project's ``target``) into it
    first. That file came from ``dbt parse`` with the committed profile and no vars, so dbt
    found it stale and parsed the whole project again on every build (about 4 s at 67 models
    on 2 cores). A build's own file matches the next build's profile and vars, so it is kept
    in the folder dagster-dbt reads, whatever ``DBT_TARGET_PATH`` says. dbt still checks every
    file's hash, profile and var before it uses the file, so a stale one only costs the full
    parse. The copy is atomic: a build that starts meanwhile reads the old file or the new one.
    """
    built = Path(target_path) / PARTIAL_PARSE_FILE_NAME
    if not built.exists():
        return
    destination = kept_parse_path(project)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{PARTIAL_PARSE_FILE_NAME}.{os.getpid()}.tmp")
    shutil.copyfile(built, partial)
    os.replace(partial, destination)


def invocations_folder(project: DbtProject) -> Path:
    """dagster-dbt's folder of command folders and of the parse it hands to each command
    (``DBT_TARGET_PATH``, by default the project's ``target``), resolved as dagster-dbt does."""
    return Path(project.project_dir, _get_dbt_target_path())


def kept_parse_path(project: DbtProject) -> Path:
    """Where dagster-dbt looks for the parse it hands to each command."""
    return invocations_folder(project) / PARTIAL_PARSE_FILE_NAME


def prune_command_folders(
    folder: Path,
    prefix: str,
    *,
    keep: int = KEPT_BUILD_FOLDERS,
    idle_seconds: float = BUILD_FOLDER_IDLE_SECONDS,
    now: float | None = None,
) -> list[Path]:
    """Remove the folders ``<prefix>-*`` of earlier dbt commands in ``folder`` but the ``keep``
    most recently written ones and any written within ``idle_seconds``; return those removed.

    A folder's last write is the later of its own and its ``dbt.log``'s (dbt appends to the log
    all through a command). Each folder is first renamed away, so two pipelines pruning at once
    never remove the same folder twice, and a half-removed folder never looks like a build's;
    one a killed process left half-removed is removed by the next prune.
    """
    now = time.time() if now is None else now
    for leftover in folder.glob(f".removing-{prefix}-*"):
        _remove(leftover)
    written: list[tuple[float, Path]] = []
    for path in folder.glob(f"{prefix}-*"):
        last_write = _last_write(path)
        if last_write is not None:
            written.append((last_write, path))
    written.sort(reverse=True)
    removed = []
    for last_write, path in written[keep:]:
        if now - last_write < idle_seconds:
            continue
        doomed = folder / f".removing-{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            path.rename(doomed)
        except FileNotFoundError:  # another pipeline removed it first
            continue
        _remove(doomed)
        removed.append(path)
    return removed


def _remove(folder: Path) -> None:
    """Remove a renamed-away folder; a prune running beside this one may be removing it too."""
    with contextlib.suppress(FileNotFoundError):  # then it is gone, as wanted
        shutil.rmtree(folder)


def _last_write(path: Path) -> float | None:
    """When a command folder (or the dbt.log in it) was last written; None when ``path`` is not
    a folder, or no longer exists."""
    try:
        if not path.is_dir():
            return None
        folder_time = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        return max(folder_time, (path / "dbt.log").stat().st_mtime)
    except FileNotFoundError:  # a command that has not logged yet
        return folder_time


def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (works without an activated virtualenv)."""
    beside = os.path.join(os.path.dirname(sys.executable), "dbt")
    return beside if os.access(beside, os.X_OK) else (shutil.which("dbt") or "dbt")


def profile(settings: Settings, *, duckdb_path: str | None = None) -> dict[str, Any]:
    """The dbt profile of ``settings``: both outputs, the configured one as the target."""
    target = settings.postgres
    return {
        PROFILE_NAME: {
            "target": settings.dbt_target,
            "outputs": {
                "duckdb": {
                    "type": "duckdb",
                    "path": duckdb_path or str(settings.build_path),
                    "schema": "main",
                    "threads": DUCKDB_THREADS,
                    # DuckDB's own limits, as in every other process of the run
                    "settings": settings.duckdb_config,
                },
                "postgres": {
                    "type": "postgres",
                    "host": target.host,
                    "port": target.port,
                    "user": target.user,
                    "password": target.password,
                    "dbname": target.dbname,
                    "schema": target.schema,
                    "threads": POSTGRES_THREADS,
                },
            },
        }
    }


def dbt_vars(settings: Settings) -> dict[str, str]:
    """The ``--vars`` the models read from the settings."""
    raw_schema = settings.postgres.raw_schema if settings.dbt_target == "postgres" else "raw"
    found = {"budget_timezone": settings.budget_timezone, "raw_schema": raw_schema}
    if settings.budget_as_of is not None:
        found["budget_as_of"] = settings.budget_as_of
    return found


def vars_args(settings: Settings) -> list[str]:
    """``--vars '<json>'`` for a dbt command line."""
    return ["--vars", json.dumps(dbt_vars(settings), sort_keys=True)]


def write_profiles(settings: Settings, directory: Path, *, duckdb_path: str | None = None) -> Path:
    """Write ``profiles.yml`` of ``settings`` into ``directory`` (mode 0600, atomically).

    Returns ``directory``, the ``--profiles-dir`` of the dbt command.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "profiles.yml"
    tmp = directory / f".profiles.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Written by the pipeline from its settings before each dbt command.\n")
        yaml.safe_dump(profile(settings, duckdb_path=duckdb_path), handle, sort_keys=False)
    os.replace(tmp, path)
    return directory


def dbt_cli(project: DbtProject, settings: Settings) -> ProjectDbtCli:
    """The dbt CLI on ``project`` with this run's profile and target."""
    return ProjectDbtCli(
        project_dir=project,
        dbt_executable=dbt_executable(),
        profiles_dir=str(write_profiles(settings, settings.state_dir / "dbt")),
        target=settings.dbt_target,
    )
