"""Fixtures of the deployment tests: an empty database for a PostgreSQL-backed Dagster instance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dagster_project.lib.dagster_instance import POSTGRES_URL_SCHEME
from dagster_project.lib.postgres import create_database, drop_database


@pytest.fixture
def dagster_postgres_url(pg_server_url) -> Iterator[str]:
    """The instance URL (psycopg2 driver) of a fresh, empty database, dropped afterwards."""
    name = f"spendwh_dagster_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server_url, name)
    yield url.replace("postgresql://", f"{POSTGRES_URL_SCHEME}://", 1)
    drop_database(pg_server_url, name)
