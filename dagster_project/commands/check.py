"""``spendwh check``: validate the configuration and the proxy database, then exit."""

from __future__ import annotations

import argparse

from dagster_project.lib.postgres import inspect_source, redact
from dagster_project.settings import ConfigError, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="validate configuration and the connection to the proxy database"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set; set it to the proxy's PostgreSQL URL "
            "(or run 'make demo' for a simulated proxy)."
        )
    info = inspect_source(settings.database_url, settings.table_prefix)
    spend = "present" if info.has(settings.table_prefix, "SpendLogs") else "absent"
    print(
        f"ok: {redact(settings.database_url)} (PostgreSQL {info.server_version}), "
        f"prefix {settings.table_prefix!r}, SpendLogs {spend}, "
        f"warehouse {settings.warehouse_path}"
    )
    return 0
