"""Fixtures of the extraction tests: the lake format every ``Warehouse`` of a test uses, and a
real S3 server (SeaweedFS) for the Iceberg tables on object storage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagster_project.settings import ICEBERG, LAKE_FORMATS
from tests.ingest import helpers
from tests.ingest.s3server import S3Server, start_s3_server, stop

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
