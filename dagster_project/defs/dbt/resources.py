"""The dbt CLI resource and the environment a dbt invocation gets from the settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from dagster_dbt import DbtCliResource, DbtProject

from dagster_project.settings import ConfigError, Settings

WAREHOUSE_POSTGRES_URL_ENV = "WAREHOUSE_POSTGRES_URL"
DEFAULT_POSTGRES_SCHEMA = "spend_warehouse"


def postgres_env_from_url(url: str) -> dict[str, str]:
    """``DBT_POSTGRES_*`` variables from a ``postgresql://user:pw@host:port/db`` URL."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", [None])[0]  # unix socket dir
    if parts.scheme not in {"postgresql", "postgres"} or not host:
        raise ConfigError(
            f"{WAREHOUSE_POSTGRES_URL_ENV} must look like postgresql://user:password@host:5432/db "
            f"(got scheme {parts.scheme!r}); fix it or unset it and set DBT_POSTGRES_HOST etc."
        )
    env = {
        "DBT_POSTGRES_HOST": host,
        "DBT_POSTGRES_PORT": str(parts.port or 5432),
        "DBT_POSTGRES_USER": unquote(parts.username or "postgres"),
        "DBT_POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
    }
    if parts.password:
        env["DBT_POSTGRES_PASSWORD"] = unquote(parts.password)
    return env


def dbt_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables a dbt invocation needs on top of ``environ``, from the validated settings.

    The duckdb target writes the build database; the budget time zone and target come from the
    settings; for the postgres target a ``WAREHOUSE_POSTGRES_URL`` fills the ``DBT_POSTGRES_*``
    variables not set explicitly, and raw tables are read from ``<schema>_raw`` by default.
    """
    env = {
        "DBT_TARGET": settings.dbt_target,
        "SPEND_WAREHOUSE_BUILD_PATH": str(settings.build_path),
        "BUDGET_TIMEZONE": settings.budget_timezone,
    }
    if settings.dbt_target == "postgres":
        url = environ.get(WAREHOUSE_POSTGRES_URL_ENV)
        if url:
            for name, value in postgres_env_from_url(url).items():
                env[name] = environ.get(name) or value
        schema = environ.get("DBT_POSTGRES_SCHEMA") or DEFAULT_POSTGRES_SCHEMA
        env["DBT_POSTGRES_SCHEMA"] = schema
        env["DBT_RAW_SCHEMA"] = environ.get("DBT_RAW_SCHEMA") or f"{schema}_raw"
    return env


def postgres_url_from_env(env: Mapping[str, str]) -> str:
    """The libpq URL of the postgres target described by ``DBT_POSTGRES_*`` in ``env``."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=env.get("DBT_POSTGRES_HOST", "127.0.0.1"),
        port=env.get("DBT_POSTGRES_PORT", "5432"),
        user=env.get("DBT_POSTGRES_USER", "postgres"),
        password=env.get("DBT_POSTGRES_PASSWORD") or None,
        dbname=env.get("DBT_POSTGRES_DBNAME", "postgres"),
    )


@contextlib.contextmanager
def applied_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in this process (dbt subprocesses inherit it), restoring it afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (works without an activated virtualenv)."""
    beside = os.path.join(os.path.dirname(sys.executable), "dbt")
    return beside if os.access(beside, os.X_OK) else (shutil.which("dbt") or "dbt")


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """The dbt CLI bound to the project and its committed profiles.yml."""
    return DbtCliResource(
        project_dir=project,
        dbt_executable=dbt_executable(),
        profiles_dir=str(project.profiles_dir),
        target=project.target,
    )
