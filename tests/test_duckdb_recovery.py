"""The build database: a corrupt file is moved aside and rebuilt, a file in use never is.

Real DuckDB files damaged the way a disk or a kill damages them (a block whose checksum no longer
matches), and a real second process holding a file open.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.lib.duckdb import (
    CorruptDatabaseError,
    WarehouseBusyError,
    connect_reader,
    connect_writer,
    is_corrupt_file,
)
from tests.duckdb_files import (
    build_database,
    corrupt_block,
    data_blocks,
    held_open,
    metadata_block,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def build(tmp_path) -> Path:
    path = tmp_path / "state" / "build.duckdb"
    build_database(path)
    return path


def _query(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _checksum_error(path: Path, sql: str = "SELECT 1") -> str:
    """The error DuckDB itself gives for ``sql`` on ``path`` (the test must exercise that one)."""
    with pytest.raises(duckdb.Error) as caught:
        _query(path, sql)
    return str(caught.value)


def _quarantined(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def _assert_usable_and_empty(path: Path) -> None:
    with connect_writer(path) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.spend_logs AS SELECT 1 AS id")
    with connect_writer(path) as con:
        assert con.execute("SELECT id FROM raw.spend_logs").fetchall() == [(1,)]


def test_a_catalog_block_failing_its_checksum_is_quarantined_and_rebuilt(build):
    corrupt_block(build, metadata_block(build))
    damaged = build.read_bytes()
    error = _checksum_error(build)
    assert "Corrupt database file" in error
    assert "checksum" in error
    assert "block" in error  # the word that once passed for a lock conflict

    with connect_writer(build, recover_corrupt=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]

    [moved] = _quarantined(build)
    assert moved.read_bytes() == damaged  # kept for inspection, unchanged
    _assert_usable_and_empty(build)


def test_without_recovery_a_corrupt_file_is_an_error_and_stays(build):
    corrupt_block(build, metadata_block(build))
    with pytest.raises(duckdb.Error, match="Corrupt database file"), connect_writer(build):
        pass
    assert build.exists()
    assert not _quarantined(build)


def test_a_data_block_failing_its_checksum_while_read_is_quarantined(build):
    corrupt_block(build, data_blocks(build)[0])
    error = _checksum_error(build, "SELECT sum(hash(request_id)) FROM raw.spend_logs")
    assert "Corrupt database file" in error
    assert "checksum" in error

    with (
        pytest.raises(CorruptDatabaseError, match="next run rebuilds it from the lake"),
        connect_writer(build, recover_corrupt=True) as con,
    ):
        con.execute("SELECT sum(hash(request_id)) FROM raw.spend_logs").fetchall()

    assert len(_quarantined(build)) == 1
    assert not build.exists()
    _assert_usable_and_empty(build)


def test_an_ordinary_query_error_does_not_quarantine(build):
    with (
        pytest.raises(duckdb.CatalogException),
        connect_writer(build, recover_corrupt=True) as con,
    ):
        con.execute("SELECT * FROM raw.no_such_table")
    assert not _quarantined(build)
    with connect_writer(build) as con:
        assert con.execute("SELECT count(*) FROM raw.spend_logs").fetchall() == [(200_000,)]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a duckdb file" * 100, id="not-duckdb"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_file_that_is_no_database_is_quarantined(tmp_path, content):
    path = tmp_path / "build.duckdb"
    path.write_bytes(content)
    with connect_writer(path, recover_corrupt=True):
        pass
    [moved] = _quarantined(path)
    assert moved.read_bytes() == content
    _assert_usable_and_empty(path)


@pytest.fixture
def held(build):
    """``build`` opened read-write by another live process, until the test ends."""
    with held_open(build) as pid:
        yield build, pid


def test_a_file_held_by_another_process_is_busy_and_never_moved(held):
    build, pid = held
    before = build.read_bytes()
    with (
        pytest.raises(WarehouseBusyError, match=rf"is open in process {pid} \("),
        connect_writer(build, recover_corrupt=True),
    ):
        pass
    with (
        pytest.raises(WarehouseBusyError, match="wait for it to finish or stop it"),
        connect_reader(build, retries=2, wait_s=0.01),
    ):
        pass
    assert not _quarantined(build)
    assert build.read_bytes() == before


@pytest.mark.parametrize(
    "error",
    [
        duckdb.IOException('IO Error: Cannot open file "/x/build.duckdb": Permission denied'),
        duckdb.IOException(
            'IO Error: Could not write file "/x/build.duckdb": No space left on device'
        ),
        duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 256 KiB"),
    ],
    ids=["permission", "disk-full", "memory"],
)
def test_errors_of_the_environment_are_not_corruption(error):
    """Moving a file aside cannot cure these, and would throw away a good database."""
    assert not is_corrupt_file(error)


def test_the_writer_applies_the_configured_limits(tmp_path):
    limits = {"memory_limit": "128MB", "threads": "1"}
    with connect_writer(tmp_path / "build.duckdb", limits=limits) as conn:
        threads, memory = conn.execute(
            "select current_setting('threads'), current_setting('memory_limit')"
        ).fetchone()
    assert threads == 1
    assert memory == "122.0 MiB"  # 128 * 10^6 bytes
