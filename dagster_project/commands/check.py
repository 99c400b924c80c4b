"""``spendwh check``: validate the configuration, the proxy database and the warehouse."""

from __future__ import annotations

import argparse
from pathlib import Path

from dagster_project.lib.identifiers import table_name
from dagster_project.lib.postgres import SPEND_LOGS, inspect_source, redact
from dagster_project.settings import ConfigError, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate configuration, the connection to the proxy database and the warehouse",
    )
    parser.set_defaults(func=run)


def warehouse_state(path: Path) -> str:
    """What the published warehouse at ``path`` holds; a warehouse in use raises, none is fine."""
    if not path.exists():
        return f"{path} not built yet ('spendwh run' builds it)"
    from dagster_project.lib.duckdb import connect_reader

    with connect_reader(path) as conn:
        found = conn.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE schema_name = 'raw' AND table_name = 'spend_logs'"
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM raw.spend_logs").fetchone()[0] if found else 0
    return f"{path}, {rows:,} spend logs"


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set; set it to the proxy's PostgreSQL URL "
            "(or run 'make demo' for a simulated proxy)."
        )
    url, prefix = settings.database_url, settings.table_prefix
    info = inspect_source(url, prefix)
    if not info.has(prefix, SPEND_LOGS):
        raise ConfigError(
            f"{redact(url)} has proxy tables named {prefix!r}<Name> but no "
            f"{table_name(prefix, SPEND_LOGS)!r}; run the proxy's database migrations there, "
            "or point DATABASE_URL at the proxy's own database."
        )
    print(
        f"ok: {redact(url)} (PostgreSQL {info.server_version}), prefix {prefix!r}, "
        "SpendLogs present"
    )
    print(f"warehouse: {warehouse_state(settings.warehouse_path)}")
    return 0
