"""Shared fixtures: a real PostgreSQL server and proxy databases built from upstream migrations.

``TEST_DATABASE_URL`` selects an existing server (CI: the machine's PostgreSQL); without it a
throwaway embedded server is started for the session. Each proxy schema variant (prefix, last
migration) is built once as a template database; tests get fresh copies of it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
import pytest

from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import (
    create_database,
    drop_database,
    start_embedded_server,
    with_database,
)
from dagster_project.settings import DEFAULT_TABLE_PREFIX
from tests.prefixes import BOTH_PREFIXES


class CountedConnection(psycopg.Connection):
    """A connection whose writes reach PostgreSQL's statistics when it closes.

    A server process hands its row counts over when it goes idle, or up to 10 s later if it
    did so less than a second before, and at exit after the client has gone. The proxy's own
    writers are idle long before the next scheduled run; a test's next step starts at once, so
    its writer flushes before closing (``pg_stat_force_next_flush``, PostgreSQL 15+). The change
    marker (``lib/ingest/changes.py``) reads these counts."""

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if exc_type is None and not self.closed and self.info.server_version >= 150000:
            self.commit()
            self.execute("SELECT pg_stat_force_next_flush()")
        super().__exit__(exc_type, exc_val, exc_tb)


@dataclass(frozen=True)
class SourceDb:
    """A fresh proxy database with the real schema."""

    url: str
    prefix: str
    until: str | None

    @property
    def dbname(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    def connect(self, **kwargs) -> psycopg.Connection:
        return CountedConnection.connect(self.url, **kwargs)

    def table(self, name: str) -> str:
        """Quoted reference to proxy table ``name``."""
        return '"' + self.prefix + name + '"'


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory) -> str:
    """URL of a PostgreSQL server tests may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return start_embedded_server(tmp_path_factory.mktemp("embedded-pg"))


@pytest.fixture(scope="session")
def _templates(pg_server_url) -> Iterator[dict]:
    built: dict[tuple[str, str | None], str] = {}
    yield built
    for name in built.values():
        drop_database(pg_server_url, name)


def _template_name(prefix: str, until: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "", prefix.lower())
    return f"spendwh_tpl_{slug}_{until or 'latest'}_{os.getpid()}"


@pytest.fixture(scope="session")
def create_source(pg_server_url, _templates) -> Callable[..., SourceDb]:
    """Factory for fixtures of any scope: ``create_source(prefix=..., until=..., like=...)``
    returns a fresh proxy database with that schema, or a copy of ``like`` (its rows included;
    nothing may be connected to it). The caller drops it (``drop_database``)."""

    def factory(
        prefix: str = DEFAULT_TABLE_PREFIX, until: str | None = None, like: SourceDb | None = None
    ) -> SourceDb:
        if like is not None:
            template, prefix, until = like.dbname, like.prefix, like.until
        else:
            key = (prefix, until)
            if key not in _templates:
                name = _template_name(prefix, until)
                url = create_database(pg_server_url, name, drop=True)
                apply_migrations(url, prefix, until=until)
                _templates[key] = name
            template = _templates[key]
        dbname = f"spendwh_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
        return SourceDb(url=with_database(pg_server_url, dbname), prefix=prefix, until=until)

    return factory


@pytest.fixture
def make_source(pg_server_url, create_source) -> Iterator[Callable[..., SourceDb]]:
    """Factory: ``make_source(prefix=..., until=..., like=...)`` returns a fresh
    :class:`SourceDb` (see ``create_source``), dropped after the test."""
    created: list[SourceDb] = []

    def factory(*args, **kwargs) -> SourceDb:
        created.append(create_source(*args, **kwargs))
        return created[-1]

    yield factory
    for source in created:
        drop_database(pg_server_url, source.dbname)


@pytest.fixture
def point_pipeline_at(tmp_path, monkeypatch):
    """Factory: the pipeline's settings for ``source`` and a warehouse in ``tmp_path/wh``, run
    from ``tmp_path`` (no stray ``.env``), with no alert destination and the default dbt target
    unless ``webhook_url`` is given."""

    def factory(source: SourceDb, webhook_url: str | None = None) -> SourceDb:
        monkeypatch.setenv("DATABASE_URL", source.url)
        monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
        monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
        for name in (
            "SPEND_ALERTS_WEBHOOK_URL",
            "SPEND_ALERTS_SLACK_WEBHOOK_URL",
            "DBT_TARGET",
            "SPEND_WAREHOUSE_ENV_FILE",
        ):
            monkeypatch.delenv(name, raising=False)
        if webhook_url:
            monkeypatch.setenv("SPEND_ALERTS_WEBHOOK_URL", webhook_url)
        monkeypatch.chdir(tmp_path)
        return source

    return factory


@pytest.fixture(params=BOTH_PREFIXES)
def prefix(request) -> str:
    """Both table prefixes: the Dheera AI Proxy's (with a space) and upstream's."""
    return request.param


@pytest.fixture
def source(make_source, prefix) -> SourceDb:
    """A fresh proxy database with the latest schema, for each prefix."""
    return make_source(prefix=prefix)
