"""Real DuckDB files for the tests: a checkpointed build database and ways to damage it."""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb

# DuckDB's file layout (storage version 1.x): a main header and two database headers of 4 KiB
# each, then blocks of ``block_alloc_size`` bytes, each starting with its checksum.
HEADER_SIZE = 4096
FIRST_BLOCK = 3 * HEADER_SIZE


def build_database(path: Path, rows: int = 200_000) -> None:
    """A build database with tables in ``raw`` and ``main``, checkpointed and closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.spend_logs AS SELECT range AS id, "
            f"md5(range::varchar) AS request_id, range / 100.0 AS spend FROM range({rows})"
        )
        con.execute(
            "CREATE TABLE main.fct AS SELECT id % 7 AS day, sum(spend) AS spend "
            "FROM raw.spend_logs GROUP BY ALL"
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _header(path: Path) -> tuple[int, int, int]:
    """(metadata block id, block count, block size) from the newer of the two database headers."""
    with path.open("rb") as handle:
        headers = [handle.read(HEADER_SIZE) for _ in range(3)][1:]
    # checksum, iteration, meta_block, free_list, block_count, block_alloc_size
    fields = [struct.unpack_from("<6Q", header) for header in headers]
    _, _, meta_block, _, block_count, block_size = max(fields, key=lambda f: f[1])
    return meta_block & ((1 << 56) - 1), block_count, block_size  # the top byte is an index


def block_offset(path: Path, block_id: int) -> int:
    """Where block ``block_id`` of the DuckDB file ``path`` starts."""
    return FIRST_BLOCK + block_id * _header(path)[2]


def metadata_block(path: Path) -> int:
    """The block holding the catalog: DuckDB reads (and checksums) it when the file opens."""
    return _header(path)[0]


def data_blocks(path: Path) -> list[int]:
    """The other blocks: table data, read (and checksummed) only when a query scans it."""
    meta, count, _ = _header(path)
    return [block for block in range(count) if block != meta]


def flip_bytes(path: Path, offset: int, count: int = 16) -> None:
    """Invert ``count`` bytes of ``path`` at ``offset`` (past a block's checksum: its payload)."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        data = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in data))


def corrupt_block(path: Path, block_id: int) -> None:
    """Damage the payload of block ``block_id`` so that reading it fails its checksum."""
    flip_bytes(path, block_offset(path, block_id) + 100)


_HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SELECT 1").fetchall()
print("holding", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def held_open(path: Path) -> Iterator[int]:
    """``path`` opened read-write by another live process (yields its PID) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
