"""Fixtures of the extraction tests: the lake format every ``Warehouse`` of a test uses."""

from __future__ import annotations

import pytest

from dagster_project.settings import LAKE_FORMATS
from tests.ingest import helpers


@pytest.fixture(params=LAKE_FORMATS)
def lake_format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each lake format in turn (parquet, iceberg), for the test and every Warehouse it makes."""
    monkeypatch.setattr(helpers, "LAKE_FORMAT", request.param)
    return request.param
