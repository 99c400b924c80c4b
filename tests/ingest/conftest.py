"""Fixtures of the extraction tests: the lake format every ``Warehouse`` of a test uses, a real
S3 server (SeaweedFS) for the Iceberg tables on object storage, and a whole Parquet run on a
simulated source that runs with other lakes are compared with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dagster_project.lib.postgres import drop_database
from dagster_project.settings import BUDGET_AS_OF_ENV, ICEBERG, LAKE_FORMATS
from dagster_project.simulator import simulate
from devinfra.s3server import S3Server, start_s3_server, stop
from tests.ingest import helpers
from tests.ingest.whole_run import marts, spendwh_run

if TYPE_CHECKING:
    from tests.conftest import SourceDb

ICEBERG_S3 = "iceberg-s3"  # the Iceberg tables on the session's S3 server
LAKE_VARIANTS = (*LAKE_FORMATS, ICEBERG_S3)


@pytest.fixture(params=LAKE_FORMATS)
def lake_format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each lake format in turn (parquet, iceberg), for the test and every Warehouse it makes."""
    monkeypatch.setattr(helpers, "LAKE_FORMAT", request.param)
    return request.param


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server with the bucket ``lake``, for the session; stopped at its end."""
    server, proc = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop(proc)


@pytest.fixture(params=LAKE_VARIANTS)
def lake_variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``lake_format``'s formats and ``iceberg-s3``: each Warehouse's tables on the S3 server."""
    if request.param == ICEBERG_S3:
        monkeypatch.setattr(helpers, "S3", request.getfixturevalue("s3_server"))
        monkeypatch.setattr(helpers, "LAKE_FORMAT", ICEBERG)
    else:
        monkeypatch.setattr(helpers, "LAKE_FORMAT", request.param)
    return request.param


@dataclass(frozen=True)
class ParquetRun:
    """A simulated source, the settings of a whole run on it, and the marts of that run with a
    Parquet lake. Never write to ``source``: copy it with ``make_source(like=source)``."""

    source: SourceDb
    budget_as_of: str
    marts: dict[str, list[tuple]] = field(default_factory=dict)

    def settings(self, warehouse_dir: Path, source: SourceDb | None = None) -> dict[str, str]:
        """The ``.env`` of a whole run on ``source`` (default: this one) into ``warehouse_dir``."""
        source = source or self.source
        return {
            "DATABASE_URL": source.url,
            "PROXY_TABLE_PREFIX": source.prefix,
            BUDGET_AS_OF_ENV: self.budget_as_of,
            "SPEND_WAREHOUSE_DIR": str(warehouse_dir),
        }


@pytest.fixture(scope="session")
def parquet_run(pg_server_url, create_source, tmp_path_factory) -> Iterator[ParquetRun]:
    """A whole ``spendwh run`` with a Parquet lake on a simulated source, once per session."""
    source = create_source()
    try:
        end = helpers.utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        simulate(source.url, source.prefix, seed=11, end=end, days=6, rows=1500)
        run = ParquetRun(source, end.isoformat())
        directory = tmp_path_factory.mktemp("parquet-run")
        published = spendwh_run(directory, run.settings(directory / "wh"))
        yield replace(run, marts=marts(published))
    finally:
        drop_database(pg_server_url, source.dbname)
