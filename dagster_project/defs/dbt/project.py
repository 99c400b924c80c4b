"""The dbt project as Dagster sees it: one cached :class:`DbtProject` with a current manifest.

The manifest is produced at definitions load time when it is missing or older than the project's
files (a fresh clone, or SQL edited since the last parse), so
``dagster definitions validate -m dagster_project.definitions`` works without a separate step.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

from dagster_project.settings import DBT_PROJECT_DIR, load_settings

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


@cache
def dbt_project() -> DbtProject:
    """The project for the configured target (``DBT_TARGET``), parsed if needed."""
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target=load_settings().dbt_target,
    )
    project.prepare_if_dev()
    if manifest_is_stale(project.manifest_path, project_files(Path(project.project_dir))):
        project.preparer.prepare(project)
    return project
