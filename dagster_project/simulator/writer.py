"""Writes simulated rows into a proxy database, using only the columns its schema version has.

Columns are discovered from ``information_schema`` once per run; every identifier is quoted
(``"Dheera AI_SpendLogs"`` contains a space). Logs go in with ``COPY ... FROM STDIN`` (text
format), the population with multi-row ``INSERT ... ON CONFLICT DO NOTHING``, so re-running a
seed against the same database leaves the population as it was.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import psycopg

from dagster_project.lib.sql import quote_ident, quoted_table, table_name
from dagster_project.settings import ConfigError
from dagster_project.simulator.population import Population

SPEND_LOGS = "SpendLogs"
ERROR_LOGS = "ErrorLogs"


@dataclass(frozen=True)
class Column:
    """One column of a source table, as the catalog describes it."""

    name: str
    nullable: bool
    has_default: bool


@dataclass(frozen=True)
class TableShape:
    """The columns a proxy table has in this database (unprefixed ``name``)."""

    name: str
    columns: dict[str, Column]

    def writable(self, provided: Iterable[str]) -> list[str]:
        """The provided columns this table has, in table order; checks the required ones."""
        provided = set(provided)
        missing = [
            c.name
            for c in self.columns.values()
            if not c.nullable and not c.has_default and c.name not in provided
        ]
        if missing:
            raise ConfigError(
                f"Table {self.name} has required columns the simulator cannot fill "
                f"({', '.join(missing)}); the proxy schema is newer than the simulator, so "
                "update spendwh or simulate into a database built by 'spendwh simulate "
                "--init-schema'."
            )
        return [c for c in self.columns if c in provided]


def table_shapes(conn: psycopg.Connection, prefix: str) -> dict[str, TableShape]:
    """Every table under ``prefix`` in the connection's current schema, by unprefixed name."""
    rows = conn.execute(
        "SELECT table_name, column_name, is_nullable = 'YES', column_default IS NOT NULL "
        "FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND starts_with(table_name, %s) "
        "ORDER BY table_name, ordinal_position",
        (prefix,),
    ).fetchall()
    columns: dict[str, dict[str, Column]] = defaultdict(dict)
    for table, column, nullable, has_default in rows:
        columns[table[len(prefix) :]][column] = Column(column, nullable, has_default)
    return {name: TableShape(name, cols) for name, cols in columns.items()}


def insert_rows(
    conn: psycopg.Connection, prefix: str, shape: TableShape, rows: Sequence[Mapping]
) -> int:
    """Insert ``rows`` (dicts) into ``shape``'s table, skipping rows whose key exists."""
    if not rows:
        return 0
    names = shape.writable(rows[0].keys())
    target = quoted_table(prefix, shape.name)
    column_list = ", ".join(quote_ident(c) for c in names)
    placeholders = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO {target} ({column_list}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    with conn.cursor() as cur:
        cur.executemany(sql, [tuple(row[c] for c in names) for row in rows])
    return len(rows)


def copy_columns(
    conn: psycopg.Connection, prefix: str, shape: TableShape, columns: Mapping[str, list]
) -> int:
    """COPY pre-escaped text ``columns`` (name -> values) into ``shape``'s table."""
    names = shape.writable(columns)
    if not names or not columns[names[0]]:
        return 0
    target = quoted_table(prefix, shape.name)
    column_list = ", ".join(quote_ident(c) for c in names)
    lines = "\n".join(map("\t".join, zip(*(columns[c] for c in names), strict=True))) + "\n"
    try:
        with conn.cursor().copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
            copy.write(lines.encode())
    except psycopg.errors.UniqueViolation as exc:
        raise ConfigError(
            f"{table_name(prefix, shape.name)} already holds rows with the simulated ids "
            "(this seed and end time were simulated into this database before); use a fresh "
            "database, another --seed or another --end."
        ) from exc
    return len(columns[names[0]])


@dataclass(frozen=True)
class CounterDeltas:
    """Spend to add to the live counters after one flush (what the proxy's flush job does)."""

    keys: dict[str, float]
    users: dict[str, float]
    teams: dict[str, float]
    organizations: dict[str, float]
    team_members: dict[tuple[str, str], float]
    end_users: dict[str, float]
    tags: dict[str, float] = field(default_factory=dict)
    projects: dict[str, float] = field(default_factory=dict)


def counter_deltas(
    population: Population,
    key_idx: np.ndarray,
    end_user_idx: np.ndarray,
    spend: np.ndarray,
    tags_carried: np.ndarray | None = None,
    *,
    with_projects: bool = False,
) -> CounterDeltas:
    """Aggregate a flushed batch's spend by key, owner, team, org, member and end user, (with
    ``tags_carried``, rows x ``population.tags``) the full cost per tag of the rows carrying it,
    and (``with_projects``: the schema has ProjectTable) by the keys' project."""
    keys: dict[str, float] = defaultdict(float)
    users: dict[str, float] = defaultdict(float)
    teams: dict[str, float] = defaultdict(float)
    orgs: dict[str, float] = defaultdict(float)
    members: dict[tuple[str, str], float] = defaultdict(float)
    end_users: dict[str, float] = defaultdict(float)
    projects: dict[str, float] = defaultdict(float)
    paying = spend > 0
    if paying.any():
        ki, per_key = np.unique(key_idx[paying], return_inverse=True)
        sums = np.bincount(per_key, weights=spend[paying])
        for i, amount in zip(ki.tolist(), sums.tolist(), strict=True):
            if i < 0:
                continue
            key = population.keys[i]
            keys[key.token] += amount
            if key.user_id:
                users[key.user_id] += amount
            if key.team_id:
                teams[key.team_id] += amount
            if key.organization_id:
                orgs[key.organization_id] += amount
            if key.team_id and key.user_id:
                members[(key.team_id, key.user_id)] += amount
            if with_projects and key.project_id:
                projects[key.project_id] += amount
        eu_paying = paying & (end_user_idx >= 0)
        for i, amount in zip(
            end_user_idx[eu_paying].tolist(), spend[eu_paying].tolist(), strict=True
        ):
            end_users[population.end_users[i].user_id] += amount
    tags: dict[str, float] = {}
    if tags_carried is not None:
        for j, tag in enumerate(population.tags):
            amount = float(spend[paying & tags_carried[:, j]].sum())
            if amount:
                tags[tag.tag_name] = amount
    return CounterDeltas(keys, users, teams, orgs, members, end_users, tags, projects)


def apply_counter_deltas(conn: psycopg.Connection, prefix: str, deltas: CounterDeltas) -> None:
    """``spend = spend + delta`` per entity, like the proxy's batched counter updates."""
    updates = (
        ("VerificationToken", "token", deltas.keys),
        ("UserTable", "user_id", deltas.users),
        ("TeamTable", "team_id", deltas.teams),
        ("OrganizationTable", "organization_id", deltas.organizations),
        ("EndUserTable", "user_id", deltas.end_users),
        ("TagTable", "tag_name", deltas.tags),  # empty unless the schema has TagTable
        ("ProjectTable", "project_id", deltas.projects),  # likewise
    )
    with conn.cursor() as cur:
        for table, id_column, amounts in updates:
            if amounts:
                cur.executemany(
                    f"UPDATE {quoted_table(prefix, table)} SET spend = spend + %s "
                    f"WHERE {quote_ident(id_column)} = %s",
                    [(amount, ident) for ident, amount in amounts.items()],
                )
        if deltas.team_members:
            cur.executemany(
                f"UPDATE {quoted_table(prefix, 'TeamMembership')} SET spend = spend + %s "
                "WHERE team_id = %s AND user_id = %s",
                [(amount, t, u) for (t, u), amount in deltas.team_members.items()],
            )


class ParallelCopier:
    """COPY batches over ``workers`` connections at once (PostgreSQL parses JSON on one core per
    connection), each batch in its own transaction; at most ``workers`` batches in flight.

    Within a batch rows keep their flush order; batches overlap in time like flushes of
    different proxy instances do. Errors of a batch are raised by the next ``submit`` or ``close``.
    """

    def __init__(
        self, url: str, prefix: str, shapes: Mapping[str, TableShape], workers: int = 2
    ) -> None:
        self.url, self.prefix, self.shapes = url, prefix, shapes
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="copy")
        self._local = threading.local()
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._inflight: deque[Future] = deque()
        self.rows_written: dict[str, int] = defaultdict(int)

    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = psycopg.connect(self.url)
            conn.execute("SET synchronous_commit TO off")
            conn.execute("SET TIME ZONE 'UTC'")  # column defaults stamp UTC, like the proxy
            conn.commit()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _write(self, tables: list[tuple[str, dict[str, list]]]) -> dict[str, int]:
        conn = self._conn()
        try:
            written = {
                name: copy_columns(conn, self.prefix, self.shapes[name], columns)
                for name, columns in tables
                if name in self.shapes
            }
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return written

    def _settle(self, future: Future) -> None:
        for name, count in future.result().items():
            self.rows_written[name] += count

    def submit(self, tables: list[tuple[str, dict[str, list]]]) -> None:
        """Queue one batch: ``(table name, text columns)`` pairs written in one transaction."""
        while len(self._inflight) >= self.workers:
            self._settle(self._inflight.popleft())
        self._inflight.append(self._pool.submit(self._write, tables))

    def wait(self) -> None:
        """Wait until every submitted batch is committed (re-raising a batch's error)."""
        while self._inflight:
            self._settle(self._inflight.popleft())

    def close(self) -> None:
        """Wait for every batch, then close the connections."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for conn in self._conns:
                conn.close()

    def __enter__(self) -> ParallelCopier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
