"""DuckDB files: the pipeline's build database (one writer) and the published warehouse.

The pipeline writes ``state/build.duckdb`` under a cross-process file lock, so a scheduled run, a
manual run and the alert sensor never interleave. At the end of a successful run the build file is
copied and atomically renamed to ``warehouse.duckdb``: analysts (notebooks, the ``duckdb`` CLI,
``spendwh alerts``) open that copy ``read_only`` and can never block the writer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
from filelock import FileLock, Timeout

DEFAULT_LOCK_TIMEOUT_S = 600.0


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse writer lock."""


def writer_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> FileLock:
    """The cross-process lock guarding writes to the DuckDB file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


@contextlib.contextmanager
def connect_writer(
    path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse read-write under the writer lock; checkpoint on success."""
    lock = writer_lock(path, timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise WarehouseBusyError(
            f"another process has been writing {path} for more than {timeout:.0f} s; "
            "wait for it to finish or stop it"
        ) from exc
    try:
        conn = duckdb.connect(str(path))
        try:
            yield conn
            conn.execute("CHECKPOINT")
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
        except duckdb.IOException as exc:  # lock held by the writer
            last = exc
            time.sleep(wait_s)
            continue
        try:
            yield conn
        finally:
            conn.close()
        return
    raise WarehouseBusyError(f"the warehouse {path} stayed locked by a writer: {last}")


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
