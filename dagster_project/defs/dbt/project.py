"""The dbt project as Dagster sees it: one cached :class:`DbtProject` with a current manifest.

The manifest is produced at definitions load time when it is missing or older than the project's
files (a fresh clone, or SQL edited since the last parse), so
``dagster definitions validate -m dagster_project.definitions`` works without a separate step.
The parse runs the ``dbt`` installed beside this Python, so ``.venv/bin/spendwh`` started by cron
or systemd (the virtualenv not on ``PATH``) works on a fresh clone too.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from dagster_shared.record import replace

from dagster_project.defs.dbt.resources import ProjectDbtCli, dbt_executable
from dagster_project.settings import DBT_PROJECT_DIR

# What a parse reads: a change to any of these makes the manifest stale.
PROJECT_INPUTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "data-tests")


def project_files(project_dir: Path, inputs: Iterable[str] = PROJECT_INPUTS) -> list[Path]:
    """Every file a dbt parse of ``project_dir`` reads."""
    files: list[Path] = []
    for name in inputs:
        path = project_dir / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
    return files


def manifest_is_stale(manifest_path: Path, files: Iterable[Path]) -> bool:
    """Whether the manifest is missing or older than any of ``files``."""
    if not manifest_path.is_file():
        return True
    built = manifest_path.stat().st_mtime
    return any(f.stat().st_mtime > built for f in files)


class LocalDbtPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (``dbt deps`` if needed, ``dbt parse``) with this Python's ``dbt``.

    The default one runs the first ``dbt`` on ``PATH``, which fails when the virtualenv is not
    activated. Only the two steps that start dbt are replaced; the lock against concurrent parses
    (the webserver and the daemon load the code location at the same time) is dagster-dbt's.
    """

    def _dbt(self, project: DbtProject, args: list[str]) -> None:
        executable = dbt_executable()
        if shutil.which(executable) is None:  # the error spendwh turns into "run make install"
            raise FileNotFoundError(errno.ENOENT, "dbt is not installed", executable)
        cli = ProjectDbtCli(project_dir=project, dbt_executable=executable)
        cli.cli(args, target_path=project.target_path).wait()

    def _prepare_packages(self, project: DbtProject) -> None:
        self._dbt(project, ["deps", "--quiet"])

    def _prepare_manifest(self, project: DbtProject) -> None:
        self._dbt(project, list(self._prepare_project_cli_args))
        self._invalidate_seeds_in_partial_parse(project)


def prepared(project: DbtProject) -> DbtProject:
    """``project`` with :class:`LocalDbtPreparer`, its manifest parsed when missing or stale."""
    project = replace(project, preparer=LocalDbtPreparer())
    project.prepare_if_dev()
    if manifest_is_stale(project.manifest_path, project_files(Path(project.project_dir))):
        project.preparer.prepare(project)
    return project


@cache
def dbt_project() -> DbtProject:
    """The project, parsed if needed.

    The manifest does not depend on the target (no model is configured by ``target``), so it is
    parsed with the committed profile's default; each run's dbt commands get the configured
    target and profile from the settings resource (:func:`~.resources.dbt_cli`).
    """
    return prepared(DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR))
