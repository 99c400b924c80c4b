"""Build the proxy's real schema from the upstream migrations in ``litellm-proxy-extras``.

The package ships the SQL that Prisma generated, one folder per migration
(``<timestamp>_<name>/migration.sql``). Applying them in order to an empty database gives the
exact schema a proxy of that version has. ``until`` stops at a migration timestamp so that older
proxy versions can be reproduced (for example before ``SpendLogs.created_at`` existed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from dagster_project.lib.sql import quote_ident
from dagster_project.settings import UPSTREAM_TABLE_PREFIX

# Milestones tests refer to by name.
SPEND_LOGS_TIMESTAMPS = "20260818000000"  # SpendLogs.created_at / updated_at
SPEND_LOGS_ORGANIZATION_ID = "20251122125322"  # SpendLogs.organization_id
DELETED_KEYS_TABLES = "20251219110931"  # DeletedVerificationToken / DeletedTeamTable
TEAM_SOFT_BUDGET = "20260205144610"  # TeamTable.soft_budget


@dataclass(frozen=True)
class Migration:
    """One upstream migration folder."""

    timestamp: str
    name: str
    path: Path

    @property
    def needs_autocommit(self) -> bool:
        """True for migrations that must run outside a transaction (``CONCURRENTLY``)."""
        code = re.sub(r"--[^\n]*", "", self.path.read_text(encoding="utf-8"))
        return "CONCURRENTLY" in code.upper()

    def sql(self, prefix: str) -> str:
        """The migration's SQL with the upstream prefix rewritten to ``prefix``."""
        return rewrite_prefix(self.path.read_text(encoding="utf-8"), prefix)


def migrations_dir() -> Path:
    """Folder of the migrations shipped by the pinned ``litellm-proxy-extras``."""
    return Path(str(resources.files("litellm_proxy_extras") / "migrations"))


def list_migrations(until: str | None = None) -> list[Migration]:
    """All migrations in apply order; with ``until``, only those with timestamp <= ``until``."""
    found = []
    for folder in sorted(migrations_dir().iterdir()):
        sql_file = folder / "migration.sql"
        if not sql_file.is_file():
            continue
        timestamp, _, name = folder.name.partition("_")
        if until is not None and timestamp > until:
            continue
        found.append(Migration(timestamp=timestamp, name=name, path=sql_file))
    if not found:
        raise RuntimeError(f"no migrations found under {migrations_dir()}")
    return found


def rewrite_prefix(sql: str, prefix: str) -> str:
    """Replace the upstream ``LiteLLM_`` table prefix in identifiers and catalog strings."""
    if prefix == UPSTREAM_TABLE_PREFIX:
        return sql
    return re.sub(r"LiteLLM_(?=[A-Z])", lambda _: prefix, sql)


def apply_migrations(
    conninfo: str, prefix: str, until: str | None = None, schema: str | None = None
) -> list[Migration]:
    """Apply the migrations to the database at ``conninfo`` (optionally into ``schema``).

    Each migration runs in its own transaction, like ``prisma migrate deploy``; applied ones are
    recorded in ``_spendwh_migrations`` so the call is idempotent.
    """
    applied: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if schema:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            conn.execute(f"SET search_path TO {quote_ident(schema)}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _spendwh_migrations ("
            " migration TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT migration FROM _spendwh_migrations")}
        for migration in list_migrations(until):
            key = f"{migration.timestamp}_{migration.name}"
            if key in done:
                continue
            sql = migration.sql(prefix)
            if migration.needs_autocommit:
                # Like Prisma: a single CREATE INDEX CONCURRENTLY runs outside a transaction.
                conn.execute(sql)
                conn.execute("INSERT INTO _spendwh_migrations (migration) VALUES (%s)", (key,))
            else:
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO _spendwh_migrations (migration) VALUES (%s)", (key,))
            applied.append(migration)
    return applied
