"""The Iceberg tables on S3-compatible object storage (``SPEND_WAREHOUSE_LAKE_URI``).

Against a real S3 server (SeaweedFS, started once per session by ``s3_server``): what the
extraction commits is read back by pyiceberg with only the catalog URL and the S3 credentials,
holds exactly the rows of ``raw.*`` and lists ``s3://`` data files; a kill between the upload and
the commit leaves the previous snapshot, and the next run deletes the orphan objects; replaced
files and expired metadata leave the bucket; a lost local copy is downloaded; bad settings get
one sentence; the catalog works in PostgreSQL; the whole job, configured by a ``.env`` as
deployed, publishes the marts of a Parquet run and lands new rows once, even when killed during
their upload. ``test_faults`` and ``test_incremental`` also run every case on S3
(``lake_variant``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pytest

from dagster_project.lib.ingest.iceberg import (
    CATALOG_NAME,
    EXPIRE_AT,
    NAMESPACE,
    list_objects,
    s3_filesystem,
)
from dagster_project.lib.ingest.lake import ICEBERG, Lake, write_single_file
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import ICEBERG_CATALOG_URL_ENV, load_settings
from devinfra.s3server import S3Server
from tests.ingest.helpers import Warehouse, insert_spend, kill_at_pause_point
from tests.ingest.test_faults import _run_until_paused
from tests.ingest.test_iceberg import (
    land_in_two_runs,
    one_sentence_error,
    same_rows,
    spend_rows,
)
from tests.ingest.whole_run import assert_same_marts, marts, spendwh_run
from tests.spendwh import PLAIN_PATH, SPENDWH

pytestmark = pytest.mark.integration


def s3_warehouse(tmp_path, s3_server: S3Server, catalog_url: str | None = None) -> Warehouse:
    """A warehouse whose Iceberg tables live under a fresh prefix of the S3 server's bucket."""
    store = s3_server.store(f"t-{uuid.uuid4().hex[:12]}")
    return Warehouse(tmp_path / "wh", ICEBERG, catalog_url, store)


def reader_table(wh: Warehouse, s3_server: S3Server, name: str):
    """Table ``name`` opened by pyiceberg with only the catalog URL and the S3 credentials."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        CATALOG_NAME,
        uri=wh.catalog_url or f"sqlite:///{wh.lake.resolve()}/catalog.db",
        **{
            "s3.endpoint": s3_server.endpoint,
            "s3.access-key-id": s3_server.access_key_id,
            "s3.secret-access-key": s3_server.secret_access_key,
            "s3.region": s3_server.region,
        },
    )
    return catalog.load_table(f"{NAMESPACE}.{name.replace('/', '__')}")


def data_objects(wh: Warehouse, name: str) -> set[str]:
    """The ``.parquet`` objects under table ``name``'s location, outside ``metadata/``."""
    location = f"{wh.object_store.uri}/{name}"
    found = list_objects(s3_filesystem(wh.object_store), location)
    return {u for u in found if u.endswith(".parquet") and "/metadata/" not in u}


def committed_objects(wh: Warehouse, name: str = "spend_logs") -> set[str]:
    """The objects of the data files that table ``name``'s current snapshot lists."""
    location = f"{wh.object_store.uri}/{name}"
    return {f"{location}/{f.path}" for f in wh.manifest(name).files}


def request_ids(table) -> list[str]:
    """The ``request_id`` of every row of an Iceberg table, repeats included, sorted."""
    ids = table.scan(selected_fields=("request_id",)).to_arrow().column("request_id")
    return sorted(ids.to_pylist())


def test_the_tables_on_s3_are_read_with_only_the_catalog_and_credentials(
    make_source, tmp_path, s3_server
):
    source = make_source()
    wh = s3_warehouse(tmp_path, s3_server)
    land_in_two_runs(wh, source, 60, 90)

    assert same_rows(wh, reader_table(wh, s3_server, "spend_logs"), "spend_logs") == 90
    same_rows(wh, reader_table(wh, s3_server, "snapshots/users"), "users")
    table = reader_table(wh, s3_server, "spend_logs")
    location = f"{wh.object_store.uri}/spend_logs"
    assert table.location() == location
    assert table.metadata_location.startswith(f"{location}/metadata/")
    paths = set(table.inspect.files().column("file_path").to_pylist())
    assert paths == {f"{location}/{f.path}" for f in wh.manifest().files}
    assert all(p.startswith(f"{location}/day=") for p in paths)
    assert paths == data_objects(wh, "spend_logs")  # nothing else uploaded

    # a new machine (the local copies lost): the live files come back from the bucket
    for file in wh.manifest().files:
        wh.store.table("spend_logs").absolute(file).unlink()
    fresh = Warehouse(wh.root, ICEBERG, None, wh.object_store).store.table("spend_logs")
    for file in fresh.read_manifest().files:
        assert fresh.absolute(file).stat().st_size == file.bytes


def test_a_kill_between_the_upload_and_the_commit_leaves_the_old_snapshot(
    make_source, tmp_path, s3_server
):
    source = make_source()
    wh = s3_warehouse(tmp_path, s3_server)
    insert_spend(source, spend_rows(200))
    wh.extract(source)
    before = reader_table(wh, s3_server, "spend_logs").current_snapshot()
    published = data_objects(wh, "spend_logs")

    insert_spend(source, spend_rows(500, first=200))
    _run_until_paused(source, wh, "before_commit", tmp_path)
    table = reader_table(wh, s3_server, "spend_logs")
    assert table.current_snapshot().snapshot_id == before.snapshot_id
    assert table.scan().to_arrow().num_rows == 200  # the uploaded files are not in the table
    assert data_objects(wh, "spend_logs") > published  # orphan objects of the killed run

    wh.extract(source)
    assert same_rows(wh, reader_table(wh, s3_server, "spend_logs"), "spend_logs") == 500
    ids = request_ids(reader_table(wh, s3_server, "spend_logs"))
    assert len(set(ids)) == len(ids)  # nothing twice
    assert data_objects(wh, "spend_logs") == committed_objects(wh)


def test_replaced_files_and_expired_metadata_leave_the_bucket(tmp_path, s3_server):
    store = s3_server.store(f"t-{uuid.uuid4().hex[:12]}")
    table = Lake(tmp_path, ICEBERG, None, store).table("snapshots/users")
    first = write_single_file(table, pa.table({"user_id": ["a"]}))
    table.publish(add=[first])
    second = write_single_file(table, pa.table({"user_id": ["a", "b"]}))
    table.publish(add=[second], remove=[first.path])
    location = f"{store.uri}/snapshots/users"
    fs = s3_filesystem(store)
    objects = {u for u in list_objects(fs, location) if "/metadata/" not in u}
    assert objects == {f"{location}/{second.path}"}

    for number in range(EXPIRE_AT):
        file = write_single_file(table, pa.table({"user_id": [f"u{number}"]}))
        table.publish(add=[file], state={"n": number})
    iceberg = table.load()
    manifest_lists = [u for u in list_objects(fs, f"{location}/metadata") if "/snap-" in u]
    assert len(manifest_lists) == len(iceberg.metadata.snapshots) < EXPIRE_AT
    assert iceberg.scan().to_arrow().num_rows == EXPIRE_AT + 2


def test_a_location_holding_another_lakes_objects_is_refused(tmp_path, s3_server):
    store = s3_server.store(f"t-{uuid.uuid4().hex[:12]}")
    first = Lake(tmp_path / "a", ICEBERG, None, store).table("spend_logs")
    first.publish(add=[write_single_file(first, pa.table({"x": [1]}))])
    second = Lake(tmp_path / "b", ICEBERG, None, store).table("spend_logs")  # its own catalog
    with pytest.raises(ValueError, match="give each lake its own prefix"):
        second.publish(add=[write_single_file(second, pa.table({"x": [2]}))])
    assert first.load().scan().to_arrow().num_rows == 1  # the first lake's files untouched
    assert len(data_objects(Warehouse(tmp_path, ICEBERG, None, store), "spend_logs")) == 1


def _config_error(values: dict[str, str], tmp_path) -> str:
    message = one_sentence_error(values, tmp_path)
    assert "s3cr3t" not in message
    return message


def test_bad_s3_settings_get_one_sentence(tmp_path):
    good = {
        "SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg",
        "SPEND_WAREHOUSE_LAKE_URI": "s3://spend-lake/warehouse/",
        "SPEND_WAREHOUSE_S3_ENDPOINT": "http://127.0.0.1:8333",
        "SPEND_WAREHOUSE_S3_ACCESS_KEY_ID": "key",
        "SPEND_WAREHOUSE_S3_SECRET_ACCESS_KEY": "s3cr3t",
    }
    store = load_settings(good, dotenv_path=tmp_path / "no.env").object_store
    assert (store.uri, store.bucket, store.prefix) == (
        "s3://spend-lake/warehouse",
        "spend-lake",
        "warehouse",
    )
    assert (store.endpoint, store.region) == ("http://127.0.0.1:8333", "us-east-1")
    assert "s3cr3t" not in repr(store)
    aws = load_settings(
        {"SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg", "SPEND_WAREHOUSE_LAKE_URI": "s3://b-1"},
        dotenv_path=tmp_path / "no.env",
    ).object_store
    assert (aws.endpoint, aws.access_key_id, aws.prefix) == (None, None, "")

    for change, expected in [
        ({"SPEND_WAREHOUSE_LAKE_FORMAT": "parquet"}, "set SPEND_WAREHOUSE_LAKE_FORMAT=iceberg"),
        ({"SPEND_WAREHOUSE_LAKE_URI": "gs://bucket/x"}, "is not an s3://bucket/prefix URI"),
        ({"SPEND_WAREHOUSE_LAKE_URI": "s3://Bad_Bucket"}, "is not an s3://bucket/prefix URI"),
        ({"SPEND_WAREHOUSE_S3_ENDPOINT": "127.0.0.1:8333"}, "is not an http(s)://host:port"),
        ({"SPEND_WAREHOUSE_S3_ENDPOINT": "http://u:s3cr3t@h:1"}, "is not an http(s)://host"),
        ({"SPEND_WAREHOUSE_S3_ACCESS_KEY_ID": ""}, "SPEND_WAREHOUSE_S3_ACCESS_KEY_ID is not set"),
        ({"SPEND_WAREHOUSE_S3_REGION": "mars"}, "is not a region name"),
        ({"SPEND_WAREHOUSE_LAKE_URI": ""}, "SPEND_WAREHOUSE_S3_ENDPOINT is set but"),
    ]:
        assert expected in _config_error({**good, **change}, tmp_path)


def test_the_catalog_in_postgresql_with_the_tables_on_s3(
    make_source, pg_server_url, tmp_path, s3_server
):
    dbname = f"iceberg_catalog_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server_url, dbname)
    try:
        settings = load_settings(
            {
                "SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"),
                "SPEND_WAREHOUSE_ICEBERG_CATALOG_URL": url,
                **s3_server.env(f"t-{uuid.uuid4().hex[:12]}"),
            },
            dotenv_path=tmp_path / "no.env",
        )
        wh = Warehouse(
            settings.warehouse_dir, ICEBERG, settings.iceberg_catalog_url, settings.object_store
        )
        assert wh.store == Lake.from_settings(settings)
        source = make_source()
        land_in_two_runs(wh, source, 40, 70)
        assert same_rows(wh, reader_table(wh, s3_server, "spend_logs"), "spend_logs") == 70
        same_rows(wh, reader_table(wh, s3_server, "snapshots/users"), "users")
        assert not (wh.lake / "catalog.db").exists()
        assert not list(wh.lake.rglob("*.metadata.json"))  # the metadata is in the bucket
        assert set(wh.store.table_names()) >= {"spend_logs", "snapshots/users"}
    finally:
        drop_database(pg_server_url, dbname)


def resend(source, late_days: int, new: int) -> Counter:
    """Insert now one copy of the newest request ``late_days`` older (a late row) and ``new``
    copies minutes newer; return how many were added per UTC day."""
    table = source.table("SpendLogs")
    shifts = [timedelta(days=-late_days)] + [timedelta(minutes=m) for m in range(1, new + 1)]
    with source.connect() as conn:
        newest = f'SELECT * FROM {table} ORDER BY "startTime" DESC LIMIT 1'
        conn.execute(f"CREATE TEMP TABLE resent AS {newest}")
        start, end = conn.execute('SELECT "startTime", "endTime" FROM resent').fetchone()
        for number, shift in enumerate(shifts):
            conn.execute(
                'UPDATE resent SET request_id = %s, "startTime" = %s, "endTime" = %s, '
                "created_at = now(), updated_at = now()",
                [f"resent-{number}", start + shift, end + shift],
            )
            conn.execute(f"INSERT INTO {table} SELECT * FROM resent")
    return Counter((start + shift).date() for shift in shifts)


def requests_per_day(warehouse: Path) -> Counter:
    """``fct_spend_daily``'s requests per UTC day in a published warehouse."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "SELECT spend_date, sum(request_count) FROM main.fct_spend_daily GROUP BY 1"
        ).fetchall()
    finally:
        con.close()
    return Counter(dict(rows))


@pytest.mark.slow
def test_the_whole_job_on_s3_with_a_postgresql_catalog_as_deployed(
    parquet_run, make_source, pg_server_url, s3_server, tmp_path
):
    source = make_source(like=parquet_run.source)
    catalog_db = f"iceberg_catalog_{uuid.uuid4().hex[:8]}"
    catalog_url = create_database(pg_server_url, catalog_db)
    try:
        prefix = f"t-{uuid.uuid4().hex[:12]}"
        settings = {
            **parquet_run.settings(tmp_path / "wh", source),
            **s3_server.env(prefix),
            ICEBERG_CATALOG_URL_ENV: catalog_url,
        }
        published = spendwh_run(tmp_path, settings)
        assert_same_marts(marts(published), parquet_run.marts)

        # every table's data files and metadata in the bucket, its entry in the catalog database
        wh = Warehouse(tmp_path / "wh", ICEBERG, catalog_url, s3_server.store(prefix))
        names = set(wh.store.table_names())
        assert {"spend_logs", "error_logs", "snapshots/users"} <= names
        fs = s3_filesystem(wh.object_store)
        for name in names:
            assert data_objects(wh, name) == committed_objects(wh, name), name
            metadata = list_objects(fs, f"{wh.object_store.uri}/{name}/metadata")
            assert any(u.endswith(".metadata.json") for u in metadata), name
        assert not list(wh.lake.rglob("*.metadata.json"))
        assert not (wh.lake / "catalog.db").exists()
        with psycopg.connect(catalog_url) as conn:
            catalogued = conn.execute(
                "SELECT table_name FROM iceberg_tables WHERE table_namespace = %s", [NAMESPACE]
            ).fetchall()
        assert {r[0] for r in catalogued} == {n.replace("/", "__") for n in names}

        # new rows, one late: the next run is killed during their upload (before the commit)
        before = reader_table(wh, s3_server, "spend_logs").current_snapshot().snapshot_id
        live = committed_objects(wh)
        per_day = requests_per_day(published)
        added = resend(source, late_days=3, new=4)
        spendwh = [str(SPENDWH), "run"]
        env = {"PATH": PLAIN_PATH, "HOME": str(tmp_path)}
        marker = tmp_path / "paused"
        kill_at_pause_point(spendwh, env, tmp_path, "before_commit:spend_logs", marker, 180)
        assert reader_table(wh, s3_server, "spend_logs").current_snapshot().snapshot_id == before
        assert data_objects(wh, "spend_logs") > live  # the killed run's uploads, uncommitted

        # the rerun lands every row once, deletes the orphans and counts each row once
        published = spendwh_run(tmp_path, settings)
        with source.connect() as conn:
            ids = conn.execute(f"SELECT request_id FROM {source.table('SpendLogs')}").fetchall()
        assert request_ids(reader_table(wh, s3_server, "spend_logs")) == sorted(r[0] for r in ids)
        assert data_objects(wh, "spend_logs") == committed_objects(wh)  # orphans deleted
        assert requests_per_day(published) == per_day + added
        assert len(added) >= 2  # the late row's day is not the new rows' one
    finally:
        drop_database(pg_server_url, catalog_db)
