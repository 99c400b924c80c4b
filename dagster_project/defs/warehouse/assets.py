"""``warehouse``: the analysts' ``warehouse.duckdb``, republished after every successful run.

The pipeline writes a private build database (``state/build.duckdb``); this asset, downstream of
every mart and of the budget alerts, replaces ``warehouse.duckdb`` with a checkpointed copy of
it, atomically (:func:`dagster_project.lib.duckdb.publish`). It is part of the graph, so a run
from the schedule, the UI or ``spendwh run`` publishes alike, and it runs only when everything
upstream materialized: a failed check or a failed model leaves analysts the last good copy.
"""

from datetime import UTC, datetime

import dagster as dg

from dagster_project.defs.alerts.assets import ALERTS_KEY
from dagster_project.defs.dbt.project import dbt_project
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.dbt.build_inputs import record_published
from dagster_project.lib.dbt.translator import dbt_translator, mart_keys
from dagster_project.lib.duckdb import WRITER_POOL, connect_writer, publish

WAREHOUSE_KEY = dg.AssetKey(["warehouse"])


def newest_request(con) -> str | None:
    """The start of the newest request in the build database (ISO 8601), if any."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'spend_logs'"
    ).fetchone()[0]
    if not exists:
        return None
    newest = con.execute("select max(start_time) from raw.spend_logs").fetchone()[0]
    return newest.isoformat() if newest is not None else None


@dg.definitions
def defs() -> dg.Definitions:
    """The publish asset, downstream of the marts the dbt manifest lists."""
    project = dbt_project()

    @dg.asset(
        key=WAREHOUSE_KEY,
        deps=[*mart_keys(project.manifest_path, dbt_translator()), ALERTS_KEY],
        group_name="serve",
        kinds={"duckdb"},
        pool=WRITER_POOL,
        description=(
            "warehouse.duckdb, the file analysts and notebooks open read-only: an atomically "
            "replaced copy of the build database after every successful run."
        ),
    )
    def warehouse(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> dg.MaterializeResult:
        settings = settings.get()
        with connect_writer(
            settings.build_path, limits=settings.duckdb_config
        ) as con:  # no other writer while copying
            con.execute("CHECKPOINT")  # the file alone holds everything: copy it
            newest = newest_request(con)
            published = publish(settings.build_path, settings.warehouse_path)
            inputs = record_published(settings.state_dir, context.run_id, datetime.now(UTC))
        context.log.info(f"published {published} (newest request {newest})")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(published)),
                "size_bytes": published.stat().st_size,
                "newest_request_at": newest,
                "build_inputs": inputs,
            }
        )

    return dg.Definitions(assets=[warehouse])
