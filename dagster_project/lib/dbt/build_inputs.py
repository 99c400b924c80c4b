"""Nothing new, nothing done: what a dbt build reads, and whether it changed since the last
published warehouse.

A scheduled run whose extraction stored nothing (no new or changed spend or error log, no changed
entity or budget row) would rebuild every model from the same lake and republish the same
warehouse. The dbt asset compares the **fingerprint** of its inputs with the one the ``warehouse``
asset recorded when it last published (``state/published_inputs.json``) and skips the build, the
alert evaluation and the publish when they are equal. The fingerprint covers:

- the live files of every lake table, as its manifest lists them (an extraction that stores rows,
  a replaced snapshot, a rollback's repair or a compaction changes them; a watermark that moves
  without data, like the "settled" state of rows at the watermark, does not);
- the dbt project's files and the dbt command with its vars and target.

A skip is refused when a table model is missing from the build database (one rebuilt from the
lake after corruption or deletion holds only the raw layer), when the published warehouse is
missing, when any pipeline-health problem is open (the next full run resolves it) and when the
last publish is older than ``max_age``: periods close, new ones open and forecasts move with the
clock alone, so budgets are evaluated again at that interval even on a quiet proxy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from dagster_project.lib.ingest.lake import Lake, Manifest, atomic_write_bytes

PUBLISHED_INPUTS_FILE = "published_inputs.json"
PENDING_INPUTS_FILE = "build_inputs.json"
DBT_PROJECT_PARTS = (
    "dbt_project.yml",
    "packages.yml",
    "models",
    "macros",
    "tests",
    "data-tests",
    "snapshots",
    "seeds",
)


def files_digest(manifest: Manifest) -> str:
    """A digest of the live files a manifest lists (not of its state)."""
    files = sorted(f"{f.path} {f.rows} {f.bytes}" for f in manifest.files)
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def lake_contents(lake: Lake) -> dict[str, str]:
    """Lake table (path under the lake) -> digest of its live files, in either lake format."""
    return {name: files_digest(lake.table(name).read_manifest()) for name in lake.table_names()}


def project_digest(project_dir: Path) -> str:
    """A digest of the dbt project's sources (models, macros, tests, configuration)."""
    digest = hashlib.sha256()
    for part in DBT_PROJECT_PARTS:
        root = project_dir / part
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class BuildInputs:
    """Everything a dbt build's result depends on, apart from the clock."""

    lake: Mapping[str, str]
    project: str
    command: Sequence[str]

    def fingerprint(self) -> str:
        text = json.dumps(
            {
                "lake": dict(sorted(self.lake.items())),
                "project": self.project,
                "command": list(self.command),
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()


def current_inputs(lake: Lake, project_dir: Path, command: Sequence[str]) -> BuildInputs:
    return BuildInputs(
        lake=lake_contents(lake),
        project=project_digest(project_dir),
        command=tuple(command),
    )


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=1).encode())


def _read_json(path: Path) -> dict[str, Any] | None:
    """The record at ``path``; None when missing or garbled (that only costs one rebuild)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def record_built(state_dir: Path, fingerprint: str, run_id: str) -> None:
    """The dbt asset built from inputs with ``fingerprint`` in ``run_id`` (not yet published)."""
    _write_json(state_dir / PENDING_INPUTS_FILE, {"fingerprint": fingerprint, "run_id": run_id})


def record_published(state_dir: Path, run_id: str, published_at: datetime) -> str | None:
    """The warehouse of ``run_id`` is published: its build's fingerprint becomes the one to
    compare with. Returns that fingerprint (None when this run built nothing)."""
    built = _read_json(state_dir / PENDING_INPUTS_FILE)
    if not built or built.get("run_id") != run_id:
        return None
    _write_json(
        state_dir / PUBLISHED_INPUTS_FILE,
        {
            "fingerprint": built["fingerprint"],
            "run_id": run_id,
            "published_at": published_at.isoformat(),
        },
    )
    return built["fingerprint"]


def last_published(state_dir: Path) -> dict[str, Any] | None:
    return _read_json(state_dir / PUBLISHED_INPUTS_FILE)


def skip_reason(
    published: Mapping[str, Any] | None,
    fingerprint: str,
    *,
    now: datetime,
    max_age: timedelta,
    warehouse_exists: bool,
    models_present: bool,
    open_health_problems: int,
) -> tuple[bool, str]:
    """Whether this run may skip the build, the alert evaluation and the publish, and why (the
    reason is logged either way)."""
    if published is None:
        return False, "building: no warehouse published from a recorded build yet"
    if not warehouse_exists:
        return False, "building: the published warehouse is missing"
    if not models_present:
        return False, "building: the build database lacks model tables (rebuilt from the lake?)"
    if open_health_problems:
        return False, f"building: {open_health_problems} pipeline-health problem(s) are open"
    if published.get("fingerprint") != fingerprint:
        return False, "building: new or changed rows, snapshots or dbt project since the publish"
    at = datetime.fromisoformat(published["published_at"])
    age = now - at
    if age >= max_age:
        minutes = int(max_age.total_seconds() // 60)
        return False, f"building: nothing new, but budgets are re-evaluated every {minutes} min"
    minutes = int(age.total_seconds() // 60)
    return True, (
        f"nothing new since the warehouse published at {at:%Y-%m-%d %H:%M:%S} UTC "
        f"({minutes} min ago, run {published.get('run_id')}): the lake, the entity snapshots and "
        "the dbt project are unchanged, so the dbt build, the alert evaluation and the publish "
        f"are skipped; budgets are evaluated again by {(at + max_age):%H:%M} UTC at the latest"
    )


def missing_tables(build_path: Path, relations: Iterable[str]) -> list[str]:
    """The relations (as dbt names them, ``"db"."schema"."table"``) absent from the build
    database: a build is due whatever the fingerprint says."""
    wanted = {".".join(_schema_and_table(relation)) for relation in relations}
    with duckdb.connect(str(build_path)) as conn:
        present = {
            f"{schema}.{name}".lower()
            for schema, name in conn.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
    return sorted(wanted - present)


def _schema_and_table(relation: str) -> tuple[str, str]:
    """``("main_intermediate", "t")`` of ``"db"."main_intermediate"."t"``."""
    parts = relation.replace('"', "").split(".")
    return parts[-2].lower(), parts[-1].lower()


def missing_postgres_tables(url: str, schema: str, relations: Iterable[str]) -> list[str]:
    """The relations (as named in a manifest parsed for the DuckDB target, whose schema is
    ``main``) absent from the PostgreSQL target's ``schema``: custom schemas keep their suffix,
    as dbt names them (``main_intermediate`` -> ``<schema>_intermediate``)."""
    import psycopg

    wanted = set()
    for relation in relations:
        manifest_schema, table = _schema_and_table(relation)
        suffix = manifest_schema.removeprefix("main")
        wanted.add((f"{schema}{suffix}".lower(), table))
    with psycopg.connect(url, autocommit=True) as conn:
        present = {
            (found_schema.lower(), name.lower())
            for found_schema, name in conn.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
    return sorted(f"{s}.{t}" for s, t in wanted - present)
