"""Fixtures for the dbt project: a raw layer on disk and real `dbt build` runs against it."""

from __future__ import annotations

import pytest

from tests.models.dbt_runner import AS_OF, BuiltWarehouse, duckdb_env, run_dbt
from tests.models.raw_data import make_dataset, write_raw_layer


@pytest.fixture(scope="session")
def built_duckdb(tmp_path_factory) -> BuiltWarehouse:
    """`dbt build` (models, unit tests and data tests) on the hand-made dataset, once."""
    work = tmp_path_factory.mktemp("dbt-duckdb")
    path = work / "build.duckdb"
    data = make_dataset()
    write_raw_layer(path, data)
    output = run_dbt(["build"], work, duckdb_env(path), vars_yaml=f'{{budget_as_of: "{AS_OF}"}}')
    return BuiltWarehouse(path=path, data=data, output=output)
