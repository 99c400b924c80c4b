"""A logs-only source: spend logs but no entity rows at all (deleted entities, a copied log).

Every id the logs name must be in its dimension, flagged as unknown to the proxy, so the
rollups' relationship tests pass (the build fails otherwise) and no spend goes missing.
"""

from __future__ import annotations

import duckdb
import pytest

from tests.models.dbt_runner import AS_OF, duckdb_env, run_dbt
from tests.models.raw_data import RawDataset, make_dataset, write_raw_layer

pytestmark = pytest.mark.integration

DIMENSIONS = {
    "dim_keys": "key_hash",
    "dim_teams": "team_id",
    "dim_organizations": "organization_id",
    "dim_users": "user_id",
    "dim_end_users": "end_user_id",
}


def test_logs_only_source_builds_green_with_unknown_dimension_rows(tmp_path):
    full = make_dataset(requests=400, days=10)
    logs = RawDataset({t: full.rows(t) for t in ("spend_logs", "error_logs")})
    assert logs.rows("spend_logs")
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, logs)  # every entity and budget table present but empty
    run_dbt(["build"], tmp_path, duckdb_env(path), vars_yaml=f'{{budget_as_of: "{AS_OF}"}}')
    with duckdb.connect(str(path), read_only=True) as conn:
        for dim, column in DIMENSIONS.items():
            missing = conn.execute(
                f"select count(distinct f.{column}) from main.fct_spend_daily as f "
                f"anti join main.{dim} as d on f.{column} = d.{column} "
                f"where f.{column} is not null"
            ).fetchone()[0]
            assert missing == 0, f"{dim} lacks {missing} id(s) the rollups use"
            flags = conn.execute(f"select distinct is_known from main.{dim}").fetchall()
            assert flags == [(False,)], dim
        users = conn.execute("select count(*) from main.dim_users").fetchone()[0]
        assert users > 0
        rollup, logged = conn.execute(
            "select (select cast(sum(spend_usd) as double) from main.fct_spend_daily), "
            "(select sum(spend) from raw.spend_logs)"
        ).fetchone()
    assert rollup == pytest.approx(logged, rel=1e-9)  # the unknown entities' spend is counted
