"""The local instance's event log: Dagster's SQLite storage, with its connections kept open.

Dagster's :class:`SqliteEventLogStorage` creates an engine, opens a connection and disposes of
it for every event it stores, and commits with ``synchronous=FULL``. That is about 6-10 ms an
event here, and a run stores many events: about 120 for an extraction with nothing new (1.2 s
of a 3.6 s run), several hundred for a dbt build. :class:`PooledSqliteEventLogStorage` keeps
one engine per database (the index and the last few run shards) with its connection open, and
commits with ``synchronous=NORMAL``, the setting SQLite recommends for WAL databases (Dagster
creates them in WAL mode): a commit survives a killed process, and only a power cut or an
operating-system crash can lose the last ones. The files, tables and readers are Dagster's own,
so the UI, the daemon and ``dagster`` commands read them unchanged.

Used by the local (SQLite) ``dagster.yaml`` that :mod:`dagster_project.lib.dagster_instance`
writes; the production instance keeps its storage in PostgreSQL.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

BUSY_TIMEOUT_SECONDS = 120  # as Dagster's own SQLite storage waits for a locked database
OPEN_ENGINES = 8  # the index shard and the run shards in use (a daemon reads many runs)


def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage that reuses one open connection per database file.

    Configured like Dagster's own (``base_dir``). At most :data:`OPEN_ENGINES` databases stay
    open; the least recently used is closed first. A forked child never uses its parent's
    connections: it opens its own.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._inherited: list[Engine] = []  # a forked child's copies of its parent's engines
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The open engine of ``shard``'s database (called under ``self._db_lock``)."""
        if self._engines_pid != os.getpid():  # forked: the parent's connections are not ours
            # kept, never closed: closing them here could disturb the parent's use of the files
            self._inherited.extend(self._engines.values())
            self._engines = OrderedDict()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=2,
            connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _synchronous_normal)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            engines, self._engines = self._engines, OrderedDict()
        for engine in engines.values():
            engine.dispose()
