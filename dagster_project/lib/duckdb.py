"""DuckDB files: the pipeline's build database (one writer) and the published warehouse.

The pipeline writes ``state/build.duckdb`` under a cross-process file lock, so a scheduled run, a
manual run and the alert sensor never interleave. At the end of a successful run the build file is
copied and atomically renamed to ``warehouse.duckdb``: analysts (notebooks, the ``duckdb`` CLI,
``spendwh alerts``) open that copy ``read_only`` and can never block the writer.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

DEFAULT_LOCK_TIMEOUT_S = 600.0
# The Dagster pool of every step that writes the build database: one such step at a time, so
# steps queue in Dagster instead of waiting on the file lock.
WRITER_POOL = "spend_warehouse_writer"

# New build databases are written in a storage format the DuckDB CLI on PyPI (duckdb-cli 1.5)
# still reads, so analysts can open the published copy with it; the setting only applies when
# the file is created.
WRITER_CONFIG = {"storage_compatibility_version": "v1.4.0"}

# DuckDB's memory in the extraction: the merge of new lake files into ``raw.*`` and the queries
# over lake files (deduplication, reconciliation). Beyond it DuckDB spills to disk, so the run's
# peak does not grow with the backlog; 128 MB merges a 2 M-row chunk as fast as 256 MB did.
EXTRACTION_MEMORY_LIMIT = "128MB"

log = logging.getLogger(__name__)


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse writer lock."""


def writer_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> FileLock:
    """The cross-process lock guarding writes to the DuckDB file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


def quarantine(path: Path) -> Path:
    """Move a database that cannot be opened (and its WAL) aside; return the new name.

    The build database is a cache of the Parquet lake, so the caller rebuilds it; the moved
    files are kept for inspection, never deleted.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", ".wal"):
        source = Path(str(path) + suffix)
        if source.exists():
            source.replace(Path(str(target) + suffix))
    return target


# DuckDB's wording (an IOException) when another process has the file open: 'Could not set lock on
# file "<path>": Conflicting lock is held in <program> (PID <n>)'. Matched by these phrases, not by
# "lock" alone: the checksum error of a corrupt file says "... in block at location <n>".
LOCK_CONFLICT_PHRASES = ("could not set lock on file", "conflicting lock is held")
# Failures that say nothing about the file's content: moving it aside would lose a good database.
ENVIRONMENT_PHRASES = (
    "permission denied",
    "no space left on device",
    "too many open files",
    "read-only file system",
)
# DuckDB's wording when a block read from the file fails its checksum.
CHECKSUM_PHRASE = "corrupt database file"


class CorruptDatabaseError(RuntimeError):
    """The build database failed a checksum while in use; it was moved aside for a rebuild."""


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB refusing the file because another process holds its lock."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.IOException) and any(p in text for p in LOCK_CONFLICT_PHRASES)


def is_corrupt_file(exc: BaseException) -> bool:
    """Whether ``exc``, raised while opening a DuckDB file, means the file itself is unusable.

    Everything DuckDB raises on open counts (bad checksums, not a DuckDB file, a truncated file,
    a WAL that cannot be replayed) except a lock held by another process, running out of memory
    and errors of the file system (permissions, a full disk).
    """
    if not isinstance(exc, duckdb.Error) or isinstance(exc, duckdb.OutOfMemoryException):
        return False
    text = str(exc).lower()
    return not is_lock_conflict(exc) and not any(p in text for p in ENVIRONMENT_PHRASES)


def _busy(path: Path, exc: BaseException | None) -> WarehouseBusyError:
    """The error for ``path`` held open by another process, naming it when DuckDB says which."""
    holder = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
    who = f"process {holder[2]} ({holder[1]})" if holder else "another process"
    return WarehouseBusyError(
        f"{path} is open in {who}; wait for it to finish or stop it, then run again"
    )


def _open_or_recover(
    path: Path, recover_corrupt: bool, limits: Mapping[str, str]
) -> duckdb.DuckDBPyConnection:
    config = {**WRITER_CONFIG, **limits}
    try:
        conn = duckdb.connect(str(path), config=config)
        conn.execute("SELECT 1").fetchall()
        return conn
    except duckdb.Error as exc:
        if is_lock_conflict(exc):
            raise _busy(path, exc) from exc
        if not recover_corrupt or not is_corrupt_file(exc):
            raise
        moved = quarantine(path)
        log.warning(
            "build database %s could not be opened (%s); moved to %s and rebuilding from the lake",
            path,
            exc,
            moved,
        )
        return duckdb.connect(str(path), config=config)


@contextlib.contextmanager
def scratch() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB for queries over lake files, bounded by ``EXTRACTION_MEMORY_LIMIT``.

    It spills into a private temporary directory, removed on exit (an in-memory database would
    otherwise spill into ``.tmp`` under the current directory).
    """
    with tempfile.TemporaryDirectory(prefix="spendwh-duckdb-") as spill:
        conn = duckdb.connect(
            config={"memory_limit": EXTRACTION_MEMORY_LIMIT, "temp_directory": spill}
        )
        try:
            yield conn
        finally:
            conn.close()


@contextlib.contextmanager
def connect_writer(
    path: Path,
    timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    *,
    recover_corrupt: bool = False,
    limits: Mapping[str, str] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse read-write under the writer lock; checkpoint on success.

    ``limits`` are DuckDB settings such as ``memory_limit`` and ``threads``
    (``Settings.duckdb_config``): beyond its memory limit DuckDB spills to disk.

    With ``recover_corrupt`` a database that fails to open (a block that fails its checksum, a
    WAL that cannot be replayed after a kill) is moved aside and an empty one is returned, for
    the caller to rebuild; a block that fails its checksum while the caller reads it moves the
    file aside too and raises :class:`CorruptDatabaseError`, so the next run rebuilds it. A file
    another process holds open raises :class:`WarehouseBusyError` and is never moved.
    """
    lock = writer_lock(path, timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise WarehouseBusyError(
            f"another process has been writing {path} for more than {timeout:.0f} s; "
            "wait for it to finish or stop it"
        ) from exc
    try:
        conn = _open_or_recover(path, recover_corrupt, limits or {})
        try:
            yield conn
            conn.execute("CHECKPOINT")
        except duckdb.Error as exc:
            if not (recover_corrupt and CHECKSUM_PHRASE in str(exc).lower()):
                raise
            conn.close()
            moved = quarantine(path)
            raise CorruptDatabaseError(
                f"{path} failed a checksum ({exc}); it was moved to {moved} and the next run "
                "rebuilds it from the lake"
            ) from exc
        finally:
            conn.close()
    finally:
        lock.release()


@contextlib.contextmanager
def connect_reader(
    path: Path, retries: int = 20, wait_s: float = 0.25
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse read-only, retrying briefly while a writer holds the file."""
    if not path.exists():
        raise FileNotFoundError(
            f"no warehouse at {path}; run 'spendwh run' (or 'make demo') to build it"
        )
    last: Exception | None = None
    for _ in range(retries):
        try:
            conn = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                raise
            last = exc
            time.sleep(wait_s)
            continue
        try:
            yield conn
        finally:
            conn.close()
        return
    raise _busy(path, last)


def publish(build_path: Path, warehouse_path: Path) -> Path:
    """Atomically replace the analysts' file with a copy of the checkpointed build database.

    Readers that have the old file open keep reading it (the rename swaps the directory entry,
    not their open file); new readers see the new file. The writer therefore never waits for
    analysts, and analysts never see a half-written database.
    """
    import os
    import shutil

    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = warehouse_path.with_name(f".{warehouse_path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(build_path, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, warehouse_path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(warehouse_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return warehouse_path
