"""PostgreSQL plumbing: URLs, fresh databases, an embedded server, and source validation."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from dagster_project.lib.sql import quote_ident, table_name
from dagster_project.settings import ConfigError

log = logging.getLogger(__name__)

SPEND_LOGS = "SpendLogs"


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead (keeps host, user, query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


def create_database(server_url: str, dbname: str, *, drop: bool = False) -> str:
    """Create ``dbname`` on the server of ``server_url``; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if drop:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE)")
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {quote_ident(dbname)}")
    return with_database(server_url, dbname)


def drop_database(server_url: str, dbname: str) -> None:
    """Drop ``dbname`` (terminating its connections)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(dbname)} WITH (FORCE)")


def start_embedded_server(data_dir: Path) -> str:
    """Start (or reuse) a private PostgreSQL server in ``data_dir``; return its URL.

    Uses the ``pgserver`` package, which bundles PostgreSQL binaries and works as root. The server
    listens on a unix socket inside ``data_dir`` and stops when this process exits.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); harmless here.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver

        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server.get_uri()


@dataclass(frozen=True)
class SourceInfo:
    """What start-up validation learned about the proxy database."""

    server_version: str
    tables: frozenset[str]

    def has(self, prefix: str, name: str) -> bool:
        """Whether proxy table ``name`` exists under ``prefix``."""
        return table_name(prefix, name) in self.tables


def redact(url: str) -> str:
    """``url`` with its password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(
    url: str, *, name: str = "DATABASE_URL", connect_timeout: int = 10
) -> psycopg.Connection:
    """An autocommit connection to ``url``, or :class:`ConfigError` saying why there is none.

    ``name`` is how the message refers to the database (the setting or option it came from).
    """
    try:
        return psycopg.connect(url, connect_timeout=connect_timeout, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"Cannot connect to {name} {redact(url)} ({reason}); check host, port, "
            "credentials and that PostgreSQL is running."
        ) from exc


def inspect_source(url: str, prefix: str, *, connect_timeout: int = 10) -> SourceInfo:
    """Connect to the proxy database and check that tables exist under ``prefix``.

    Raises :class:`ConfigError` with one sentence for an unreachable database, a refused login,
    or a prefix under which no proxy table exists (naming the prefixes that do exist).
    """
    with connect(url, connect_timeout=connect_timeout) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ANY (current_schemas(false))"
        ).fetchall()
    tables = frozenset(r[0] for r in rows)
    info = SourceInfo(server_version=version, tables=tables)
    if not any(t.startswith(prefix) for t in tables):
        others = sorted({t[: -len(SPEND_LOGS)] for t in tables if t.endswith(SPEND_LOGS)})
        hint = (
            f"tables exist under {', '.join(repr(o) for o in others)}; set PROXY_TABLE_PREFIX "
            "to that"
            if others
            else "check that DATABASE_URL points at the proxy's database and its migrations ran"
        )
        raise ConfigError(f"No proxy tables named {prefix!r}<Name> in {redact(url)}; {hint}.")
    return info
