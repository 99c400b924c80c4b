"""The demo proxy: an embedded PostgreSQL with the real proxy schema, used when no DATABASE_URL.

The server's data lives under ``<SPEND_WAREHOUSE_DIR>/state/demo-postgres`` so the demo survives
between commands (``make demo`` twice, then ``spendwh ui``); it runs while the Python process that
started it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import create_database, start_embedded_server
from dagster_project.lib.sql import quoted_table
from dagster_project.settings import Settings

log = logging.getLogger(__name__)

DEMO_DATABASE = "proxy_demo"


@dataclass(frozen=True)
class DemoSource:
    """The embedded demo proxy database."""

    url: str
    spend_log_rows: int


def demo_dir(settings: Settings):
    """Data directory of the embedded demo server."""
    return settings.state_dir / "demo-postgres"


def has_demo(settings: Settings) -> bool:
    """Whether an embedded demo proxy was created under this warehouse dir."""
    return (demo_dir(settings) / "PG_VERSION").is_file()


def ensure_demo_source(settings: Settings) -> DemoSource:
    """Start the embedded server, create the demo database and its schema if needed."""
    log.info("starting the embedded demo PostgreSQL in %s", demo_dir(settings))
    server_url = start_embedded_server(demo_dir(settings))
    url = create_database(server_url, DEMO_DATABASE)
    applied = apply_migrations(url, settings.table_prefix)
    if applied:
        log.info("created the proxy schema from %d upstream migrations", len(applied))
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT count(*) FROM {quoted_table(settings.table_prefix, 'SpendLogs')}"
        ).fetchone()[0]
    return DemoSource(url=url, spend_log_rows=rows)


def no_source_message(settings: Settings) -> str:
    """Why a command or run has no source, and the fixes: one sentence wherever it is raised."""
    return (
        f"DATABASE_URL is not set and there is no demo proxy under {settings.warehouse_dir}; "
        "set DATABASE_URL to the proxy's PostgreSQL URL (in the environment or .env), or run "
        "'make demo' for a simulated proxy. spendwh reads ./.env and ./data from the directory "
        f"it starts in (here {Path.cwd()}): start it from the project directory."
    )


def resolve_source(settings: Settings) -> Settings:
    """``settings`` with a database URL: the user's, else the demo proxy if one exists."""
    if settings.database_url is not None or not has_demo(settings):
        return settings
    return replace(settings, database_url=ensure_demo_source(settings).url)
