"""The lake as Iceberg tables (``SPEND_WAREHOUSE_LAKE_FORMAT=iceberg``).

What the extraction commits is read back by pyiceberg alone, as another engine would (through
the catalog, not our code), and holds exactly the rows of ``raw.*``; the watermark is in the
snapshot; a kill between writing the files and the commit leaves the previous snapshot; the
catalog works in SQLite and in PostgreSQL; a whole ``spendwh run`` gives the same marts as the
Parquet layout. The other extraction tests run in both formats (``lake_format`` fixture).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import duckdb
import psycopg
import pyarrow as pa
import pytest

from dagster_project.lib.dbt.build_inputs import lake_contents
from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest import contract as rc
from dagster_project.lib.ingest.extract import extract_snapshots
from dagster_project.lib.ingest.iceberg import (
    CATALOG_NAME,
    EXPIRE_AT,
    KEEP_SNAPSHOTS,
    NAMESPACE,
    STATE_PROPERTY,
)
from dagster_project.lib.ingest.lake import (
    ICEBERG,
    MANIFEST_NAME,
    PARQUET,
    Lake,
    LakeFormatError,
    write_single_file,
)
from dagster_project.lib.ingest.source import SourceSession
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import LAKE_FORMAT_ENV, ConfigError, load_settings
from tests.ingest.helpers import Warehouse, insert_spend, ms, spend_row, utcnow
from tests.ingest.test_faults import _run_until_paused
from tests.ingest.whole_run import assert_same_marts, marts, spendwh_run

pytestmark = pytest.mark.integration


def reader_table(wh: Warehouse, name: str):
    """Lake table ``name`` opened by pyiceberg alone, through the catalog, as another engine."""
    from pyiceberg.catalog.sql import SqlCatalog

    url = wh.catalog_url or f"sqlite:///{wh.lake.resolve()}/catalog.db"
    catalog = SqlCatalog(CATALOG_NAME, uri=url)  # the catalog name is part of the table key
    return catalog.load_table(f"{NAMESPACE}.{name.replace('/', '__')}")


def same_rows(wh: Warehouse, table, raw_table: str) -> int:
    """Assert the Iceberg ``table`` another reader loaded holds exactly ``raw.<raw_table>``."""
    lake_rows = table.scan().to_arrow()
    columns = ", ".join(f'"{c}"' for c in lake_rows.column_names)
    con = duckdb.connect(str(wh.build), read_only=True)
    try:
        con.register("lake_rows", lake_rows)
        raw = con.execute(f"SELECT {columns} FROM raw.{raw_table} ORDER BY ALL").fetchall()
        lake = con.execute(f"SELECT {columns} FROM lake_rows ORDER BY ALL").fetchall()
    finally:
        con.close()
    assert lake == raw, f"{table.name()} differs from raw.{raw_table}"
    return len(raw)


def spend_rows(n: int, *, first: int = 0) -> list[dict]:
    now = ms(utcnow())
    return [spend_row(f"r{i:05d}", now - timedelta(minutes=7 * i)) for i in range(first, n)]


def snapshot_tables(wh: Warehouse, source) -> None:
    with (
        SourceSession(source.url, source.prefix) as session,
        connect_writer(wh.build) as con,
    ):
        extract_snapshots(session, con, wh.store)


def land_in_two_runs(wh: Warehouse, source, first: int, total: int):
    """Extract ``first`` spend rows, then rows up to ``total``, then the entity snapshots.

    Returns the second extraction's result.
    """
    insert_spend(source, spend_rows(first))
    wh.extract(source)
    insert_spend(source, spend_rows(total, first=first))
    result = wh.extract(source)
    snapshot_tables(wh, source)
    return result


def test_another_reader_sees_exactly_the_raw_rows_and_the_watermark(make_source, tmp_path):
    source = make_source()
    wh = Warehouse(tmp_path / "wh", ICEBERG)
    result = land_in_two_runs(wh, source, 60, 90)

    assert same_rows(wh, reader_table(wh, "spend_logs"), "spend_logs") == 90
    for raw_table in rc.SNAPSHOT_TABLES.values():
        same_rows(wh, reader_table(wh, f"snapshots/{raw_table}"), raw_table)

    table = reader_table(wh, "spend_logs")
    state = json.loads(table.current_snapshot().summary[STATE_PROPERTY])
    assert state["watermark"] == result.watermark_after.isoformat()
    assert wh.manifest().state == state
    (field,) = table.spec().fields  # partitioned by the day our day= directories hold
    assert (str(field.transform), table.schema().find_column_name(field.source_id)) == (
        "day",
        "start_time",
    )
    days = {f.partition for f in wh.manifest().files}
    assert {str(p["day"]) for p in table.inspect.partitions().column("partition").to_pylist()} == (
        days
    )
    assert not list(wh.lake.rglob(MANIFEST_NAME))  # no home-made manifest beside the catalog

    # "nothing new, nothing done" sees the Iceberg tables: data changes them, state alone not
    contents = lake_contents(wh.store)
    assert {"spend_logs", "snapshots/users"} <= set(contents)
    wh.store.table("spend_logs").publish(state={**state, "settled": state["watermark"]})
    assert lake_contents(wh.store) == contents
    insert_spend(source, spend_rows(95, first=90))
    wh.extract(source)
    assert lake_contents(wh.store)["spend_logs"] != contents["spend_logs"]


def test_a_kill_between_the_files_and_the_commit_leaves_the_old_snapshot(make_source, tmp_path):
    source = make_source()
    wh = Warehouse(tmp_path / "wh", ICEBERG)
    insert_spend(source, spend_rows(200))
    wh.extract(source)
    before = reader_table(wh, "spend_logs").current_snapshot()
    published = {f.path for f in wh.manifest().files}

    insert_spend(source, spend_rows(500, first=200))
    _run_until_paused(source, wh, "before_publish", tmp_path)
    table = reader_table(wh, "spend_logs")
    assert table.current_snapshot().snapshot_id == before.snapshot_id
    assert table.scan().to_arrow().num_rows == 200  # the written files are not in the table
    table_dir = wh.lake / "spend_logs"
    on_disk = {p.relative_to(table_dir).as_posix() for p in table_dir.rglob("day=*/*.parquet")}
    assert on_disk > published  # orphans of the killed run

    wh.extract(source)
    assert same_rows(wh, reader_table(wh, "spend_logs"), "spend_logs") == 500
    ids = reader_table(wh, "spend_logs").scan(selected_fields=("request_id",)).to_arrow()
    assert len(set(ids.column("request_id").to_pylist())) == ids.num_rows  # nothing twice
    on_disk = {p.relative_to(table_dir).as_posix() for p in table_dir.rglob("*.parquet")}
    assert on_disk == {f.path for f in wh.manifest().files}  # orphans removed


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_the_catalog_in_postgresql(make_source, pg_server_url, tmp_path, scheme):
    dbname = f"iceberg_catalog_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, dbname)
    try:
        settings = load_settings(
            {
                "SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"),
                "SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg",
                "SPEND_WAREHOUSE_ICEBERG_CATALOG_URL": scheme + url.removeprefix("postgresql"),
            },
            dotenv_path=tmp_path / "no.env",
        )
        lake = Lake.from_settings(settings)
        wh = Warehouse(settings.warehouse_dir, ICEBERG, settings.iceberg_catalog_url)
        assert wh.store == lake
        source = make_source()
        land_in_two_runs(wh, source, 40, 70)
        assert same_rows(wh, reader_table(wh, "spend_logs"), "spend_logs") == 70
        same_rows(wh, reader_table(wh, "snapshots/users"), "users")
        assert not (wh.lake / "catalog.db").exists()
        with psycopg.connect(url) as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM iceberg_tables WHERE table_namespace = %s", [NAMESPACE]
                ).fetchall()
            }
        assert {"spend_logs", "snapshots__users"} <= names
    finally:
        drop_database(pg_server_url, dbname)


def one_sentence_error(values: dict[str, str], tmp_path) -> str:
    with pytest.raises(ConfigError) as error:
        load_settings(values, dotenv_path=tmp_path / "no.env")
    message = str(error.value)
    assert message.endswith(".")  # one sentence
    assert ". " not in message.rstrip(".")
    return message


def test_lake_settings_default_to_parquet_and_bad_values_get_one_sentence(tmp_path):
    quiet = load_settings({"SPEND_WAREHOUSE_DIR": str(tmp_path)}, dotenv_path=tmp_path / "x")
    assert (quiet.lake_format, quiet.iceberg_catalog_url) == (PARQUET, None)
    iceberg = load_settings(
        {"SPEND_WAREHOUSE_DIR": str(tmp_path), "SPEND_WAREHOUSE_LAKE_FORMAT": "Iceberg"},
        dotenv_path=tmp_path / "x",
    )
    assert Lake.from_settings(iceberg).iceberg_catalog == f"sqlite:///{tmp_path}/lake/catalog.db"
    spelled = load_settings(
        {
            "SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg",
            "SPEND_WAREHOUSE_ICEBERG_CATALOG_URL": "postgres://u:pw@db:5432/catalog",
        },
        dotenv_path=tmp_path / "x",
    )
    assert spelled.iceberg_catalog_url == "postgresql://u:pw@db:5432/catalog"

    assert "SPEND_WAREHOUSE_LAKE_FORMAT='delta' is not a lake format" in one_sentence_error(
        {"SPEND_WAREHOUSE_LAKE_FORMAT": "delta"}, tmp_path
    )
    for url, expected in [
        ("mysql://u:secret@db/catalog", "neither a sqlite:/// nor a postgresql:// URL"),
        ("sqlite://", "names no SQLite file"),
        ("postgresql://u:secret@db:5432", "needs a host and a database"),
    ]:
        message = one_sentence_error(
            {"SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg", "SPEND_WAREHOUSE_ICEBERG_CATALOG_URL": url},
            tmp_path,
        )
        assert expected in message
        assert "secret" not in message
    assert "set SPEND_WAREHOUSE_LAKE_FORMAT=iceberg" in one_sentence_error(
        {"SPEND_WAREHOUSE_ICEBERG_CATALOG_URL": "sqlite:////tmp/c.db"}, tmp_path
    )


@pytest.mark.slow
def test_a_whole_run_on_iceberg_gives_the_marts_of_a_parquet_run(parquet_run, tmp_path):
    settings = {**parquet_run.settings(tmp_path / "wh"), LAKE_FORMAT_ENV: ICEBERG}
    published = spendwh_run(tmp_path, settings)
    assert_same_marts(marts(published), parquet_run.marts)
    assert (tmp_path / "wh" / "lake" / "catalog.db").exists()
    assert not list((tmp_path / "wh" / "lake").rglob(MANIFEST_NAME))


def test_snapshots_expire_and_their_metadata_files_go(tmp_path):
    table = Lake(tmp_path, ICEBERG).table("spend_logs")
    for number in range(EXPIRE_AT + 5):
        file = write_single_file(table, pa.table({"request_id": [f"r{number}"]}), "2026-03-01")
        table.publish(add=[file], state={"watermark": str(number)})
    iceberg = table.load()
    assert KEEP_SNAPSHOTS <= len(iceberg.metadata.snapshots) < EXPIRE_AT
    assert table.read_manifest().state == {"watermark": str(EXPIRE_AT + 4)}
    assert iceberg.scan().to_arrow().num_rows == EXPIRE_AT + 5  # expiry never drops data
    manifest_lists = list((table.dir / "metadata").glob("snap-*.avro"))
    assert len(manifest_lists) == len(iceberg.metadata.snapshots)


def test_a_table_in_the_other_layout_is_refused(tmp_path):
    parquet = Lake(tmp_path / "a", PARQUET).table("spend_logs")
    parquet.publish(add=[write_single_file(parquet, pa.table({"x": [1]}))])
    with pytest.raises(LakeFormatError, match="is in the parquet layout"):
        Lake(tmp_path / "a", ICEBERG).table("spend_logs")
    iceberg = Lake(tmp_path / "b", ICEBERG).table("spend_logs")
    iceberg.publish(add=[write_single_file(iceberg, pa.table({"x": [1]}))])
    with pytest.raises(LakeFormatError, match="SPEND_WAREHOUSE_LAKE_FORMAT=iceberg"):
        Lake(tmp_path / "b", PARQUET).table("spend_logs")


def test_a_catalog_shared_by_two_lakes_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    first = Lake(tmp_path / "a", ICEBERG, url).table("spend_logs")
    first.publish(add=[write_single_file(first, pa.table({"x": [1]}))])
    with pytest.raises(ValueError, match="give each lake its own catalog"):
        Lake(tmp_path / "b", ICEBERG, url).table("spend_logs").read_manifest()
