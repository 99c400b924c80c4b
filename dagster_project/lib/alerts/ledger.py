"""The alert ledger: the durable record of every alert decided and every message to send.

A SQLite file in the state directory (``state/alerts.sqlite``), not a DuckDB table, because the
DuckDB build file is a rebuildable cache: deleting it must not forget which alerts fired, when
they were first detected, or whether they were delivered. The DuckDB table
``fct_budget_alerts`` is a mirror of this ledger, rewritten after every evaluation.

Tables:

- ``alerts``: one row per ``alert_id`` (PRIMARY KEY; inserts are ``ON CONFLICT DO NOTHING``, so
  ``detected_at``/``is_late`` of an existing alert never change). ``notification`` says what
  happened to it: ``queued`` (an outbox row per destination), ``no_destination`` (none was
  configured when it was decided) or ``history`` (its period had closed before the ledger's
  first evaluation: recorded, not sent, so installing on old data does not flood Slack).
- ``health_events``: pipeline-health alerts (alerts could not be evaluated), edge-triggered: one
  open event per problem until a healthy evaluation resolves it.
- ``outbox``: one row per (message, destination) with its delivery state; see
  :mod:`dagster_project.lib.alerts.delivery`.
- ``delivery_attempts``: every attempt, with its outcome.
- ``ledger_meta``: ``armed_at`` (first evaluation) and ``last_evaluated_at``.

Writers use ``BEGIN IMMEDIATE`` transactions in WAL mode; readers (``spendwh alerts``) open the
file read-only and never block them.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dagster_project.lib.alerts.messages import health_message
from dagster_project.lib.alerts.records import (
    CONTRACT_COLUMNS,
    Alert,
    HealthProblem,
    decimal_text,
    to_decimal,
)
from dagster_project.lib.times import iso, parse_iso

LEDGER_FILE_NAME = "alerts.sqlite"

_SCHEMA = """
create table if not exists ledger_meta (
    key text primary key,
    value text not null
);
create table if not exists alerts (
    alert_id text primary key,
    entity_type text not null,
    entity_id text not null,
    entity_alias text,
    alert_type text not null
        check (alert_type in ('soft_budget', 'max_budget', 'threshold', 'projected')),
    threshold_usd text,
    threshold_pct text,
    period_start text,
    period_end text,
    breached_at text not null,
    period_spend_usd text not null,
    detected_at text not null,
    is_late integer not null check (is_late in (0, 1)),
    message text not null,
    budget_source text,
    budget_id text,
    projected_period_spend_usd text,
    notification text not null check (notification in ('queued', 'no_destination', 'history')),
    budget_model text,
    budget_window text
);
create table if not exists health_events (
    event_id text primary key,
    problem_key text not null,
    message text not null,
    first_seen_at text not null,
    last_seen_at text not null,
    resolved_at text
);
create unique index if not exists health_events_one_open
    on health_events (problem_key) where resolved_at is null;
create table if not exists outbox (
    message_id text not null,
    kind text not null check (kind in ('budget_alert', 'pipeline_health')),
    destination text not null,
    status text not null check (status in ('pending', 'sent', 'failed')),
    attempts integer not null default 0,
    next_attempt_at text not null,
    last_http_status integer,
    last_error text,
    created_at text not null,
    sent_at text,
    primary key (message_id, destination)
);
create index if not exists outbox_due on outbox (status, next_attempt_at);
create table if not exists delivery_attempts (
    attempt_id integer primary key autoincrement,
    message_id text not null,
    destination text not null,
    attempt integer not null,
    started_at text not null,
    finished_at text,
    outcome text not null check (outcome in ('sending', 'sent', 'retry', 'failed')),
    http_status integer,
    error text
);
"""


def ledger_path(state_dir: Path) -> Path:
    """Where the ledger of a warehouse lives."""
    return state_dir / LEDGER_FILE_NAME


def connect_ledger(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger for writing; autocommit outside explicit BEGINs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("pragma journal_mode = wal")
    conn.execute("pragma synchronous = full")
    conn.executescript(_SCHEMA)
    _add_missing_columns(conn)
    return conn


# Columns added after the first release: (table, column, type). A ledger written by an older
# version gets them on open (null for its rows), so the alert history is never rewritten.
_ADDED_COLUMNS = (("alerts", "budget_model", "text"), ("alerts", "budget_window", "text"))


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, typ in _ADDED_COLUMNS:
        present = {row["name"] for row in conn.execute(f"pragma table_info({table})")}
        if column not in present:
            conn.execute(f"alter table {table} add column {column} {typ}")


def connect_ledger_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing ledger read-only (never blocks the pipeline)."""
    if not path.exists():
        raise FileNotFoundError(
            f"no alert ledger at {path}; run 'spendwh run' to evaluate budget alerts first"
        )
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    conn.row_factory = sqlite3.Row
    return conn


def open_health_problem_count(path: Path) -> int:
    """How many pipeline-health problems are open (0 when there is no ledger yet)."""
    if not path.exists():
        return 0
    conn = connect_ledger_readonly(path)
    try:
        return conn.execute(
            "select count(*) from health_events where resolved_at is null"
        ).fetchone()[0]
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error): one writer at a time."""
    conn.execute("begin immediate")
    try:
        yield conn
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A ``ledger_meta`` value."""
    row = conn.execute("select value from ledger_meta where key = ?", (key,)).fetchone()
    return None if row is None else row["value"]


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "insert into ledger_meta (key, value) values (?, ?) "
        "on conflict (key) do update set value = excluded.value",
        (key, value),
    )


def _enqueue(
    conn: sqlite3.Connection, message_id: str, kind: str, destinations: Sequence[str], now: str
) -> None:
    conn.executemany(
        "insert into outbox (message_id, kind, destination, status, next_attempt_at, created_at) "
        "values (?, ?, ?, 'pending', ?, ?) on conflict do nothing",
        [(message_id, kind, dest, now, now) for dest in destinations],
    )


@dataclass(frozen=True)
class EvaluationResult:
    """What one evaluation added to the ledger."""

    new_alert_ids: list[str] = field(default_factory=list)
    existing: int = 0
    queued: int = 0
    history: int = 0
    resolved_health_events: int = 0


def record_evaluation(
    conn: sqlite3.Connection,
    alerts: Iterable[Alert],
    destinations: Sequence[str],
    now: datetime,
    ran_at: datetime | None = None,
    notify_history: bool = False,
) -> EvaluationResult:
    """Record the alerts of one healthy evaluation, and queue the new ones for delivery.

    ``now`` is the instant the data describes (it became the alerts' ``detected_at``);
    ``ran_at`` is the wall-clock time of the run (default ``now``). In one transaction: insert
    each alert unless its ``alert_id`` exists, queue each new alert for every destination
    configured now, resolve open pipeline-health events (the data is trusted again) and stamp
    ``last_evaluated_at`` with ``ran_at`` (the sensor's dead man's switch reads it). On the
    ledger's first evaluation, alerts of already closed periods are recorded as ``history`` and
    not sent, unless ``notify_history``. A crash
    before COMMIT leaves nothing; after it, the decision and its outbox rows are both durable,
    so the sender finds them.
    """
    now_text = iso(now)
    new_ids: list[str] = []
    existing = queued = history = 0
    with transaction(conn):
        first_evaluation = get_meta(conn, "armed_at") is None
        for alert in alerts:
            if first_evaluation and alert.is_late and not notify_history:
                notification = "history"
            elif destinations:
                notification = "queued"
            else:
                notification = "no_destination"
            if _same_breach_in_an_overlapping_window(conn, alert):
                existing += 1
                continue
            cursor = conn.execute(
                f"insert into alerts ({', '.join(_ALERT_COLUMNS)}) "
                f"values ({', '.join('?' for _ in _ALERT_COLUMNS)}) on conflict do nothing",
                _alert_params(alert, notification),
            )
            if cursor.rowcount == 0:
                existing += 1
                continue
            new_ids.append(alert.alert_id)
            if notification == "queued":
                _enqueue(conn, alert.alert_id, "budget_alert", destinations, now_text)
                queued += 1
            history += notification == "history"
        resolved = conn.execute(
            "update health_events set resolved_at = ? where resolved_at is null", (now_text,)
        ).rowcount
        if first_evaluation:
            _set_meta(conn, "armed_at", now_text)
        _set_meta(conn, "last_evaluated_at", iso(ran_at or now))
    return EvaluationResult(new_ids, existing, queued, history, resolved)


# The columns of ``alerts`` an evaluation writes, in the order of ``_alert_params``.
_ALERT_COLUMNS = (
    *CONTRACT_COLUMNS,
    "budget_source",
    "budget_id",
    "projected_period_spend_usd",
    "notification",
    "budget_model",
    "budget_window",
)


def _same_breach_in_an_overlapping_window(conn: sqlite3.Connection, alert: Alert) -> bool:
    """Whether a per-model budget's breach is already recorded for an overlapping window.

    A rolling window opens at the first charged request, so a late request older than that one
    can move the window's start, and with it the alert's id. The breach is the same: the ledger
    keeps the alert it recorded first and sends nothing again.
    """
    if alert.budget_model is None or alert.period_start is None:
        return False
    found = conn.execute(
        "select 1 from alerts where entity_type = ? and entity_id = ? "
        "and coalesce(budget_source, '') = ? and budget_model = ? and alert_type = ? "
        "and coalesce(threshold_pct, '') = ? and alert_id <> ? "
        "and (? is null or period_start < ?) and (period_end is null or period_end > ?) "
        "limit 1",
        (
            alert.entity_type,
            alert.entity_id,
            alert.budget_source or "",
            alert.budget_model,
            alert.alert_type,
            decimal_text(alert.threshold_pct) or "",
            alert.alert_id,
            iso(alert.period_end),
            iso(alert.period_end),
            iso(alert.period_start),
        ),
    ).fetchone()
    return found is not None


def _alert_params(alert: Alert, notification: str) -> tuple[Any, ...]:
    """The values of ``_ALERT_COLUMNS`` for one alert."""
    return (
        alert.alert_id,
        alert.entity_type,
        alert.entity_id,
        alert.entity_alias,
        alert.alert_type,
        decimal_text(alert.threshold_usd),
        decimal_text(alert.threshold_pct),
        iso(alert.period_start),
        iso(alert.period_end),
        iso(alert.breached_at),
        decimal_text(alert.period_spend_usd),
        iso(alert.detected_at),
        int(alert.is_late),
        alert.message,
        alert.budget_source,
        alert.budget_id,
        decimal_text(alert.projected_period_spend_usd),
        notification,
        alert.budget_model,
        alert.budget_window,
    )


def health_event_id(problem_key: str, first_seen_at: datetime) -> str:
    """Identity of one health event (a problem, from the moment it was first seen)."""
    return hashlib.sha256(f"{problem_key}\x1f{iso(first_seen_at)}".encode()).hexdigest()[:32]


def record_health_problems(
    conn: sqlite3.Connection,
    problems: Iterable[HealthProblem],
    message: str,
    destinations: Sequence[str],
    now: datetime,
) -> list[str]:
    """Open a pipeline-health event per new problem (edge-triggered); return the new ids.

    A problem that is already open only gets its ``last_seen_at`` refreshed, so a stale source
    produces one notification, not one per run.
    """
    now_text = iso(now)
    opened: list[str] = []
    with transaction(conn):
        for problem in problems:
            updated = conn.execute(
                "update health_events set last_seen_at = ?, message = ? "
                "where problem_key = ? and resolved_at is null",
                (now_text, message, problem.key),
            ).rowcount
            if updated:
                continue
            event_id = health_event_id(problem.key, now)
            conn.execute(
                "insert into health_events values (?, ?, ?, ?, ?, null)",
                (event_id, problem.key, message, now_text, now_text),
            )
            _enqueue(conn, event_id, "pipeline_health", destinations, now_text)
            opened.append(event_id)
    return opened


def record_run_failure(
    ledger: Path,
    *,
    job_name: str,
    failed_steps: Sequence[str],
    reason: str,
    destinations: Sequence[str],
    now: datetime,
) -> HealthProblem:
    """Open a pipeline-health event for a failed run of ``job_name`` (one open per job).

    Used by the run-failure sensor and by in-process runners (``spendwh run``), so a failed run
    is never silent; the next healthy evaluation resolves it.
    """
    steps = f" (failed: {', '.join(failed_steps)})" if failed_steps else ""
    first_line = (reason.strip().splitlines() or ["run failed"])[0]
    problem = HealthProblem(
        key=f"run:{job_name}", message=f"run of {job_name} failed{steps}: {first_line}"
    )
    conn = connect_ledger(ledger)
    try:
        record_health_problems(conn, [problem], health_message([problem]), destinations, now)
    finally:
        conn.close()
    return problem


def alert_from_row(row: sqlite3.Row | dict[str, Any]) -> Alert:
    """Rebuild an :class:`Alert` from a row of the ``alerts`` table."""
    return Alert(
        alert_id=row["alert_id"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        entity_alias=row["entity_alias"],
        alert_type=row["alert_type"],
        threshold_usd=to_decimal(row["threshold_usd"]),
        threshold_pct=to_decimal(row["threshold_pct"]),
        period_start=parse_iso(row["period_start"]),
        period_end=parse_iso(row["period_end"]),
        breached_at=parse_iso(row["breached_at"]),
        period_spend_usd=to_decimal(row["period_spend_usd"]),
        detected_at=parse_iso(row["detected_at"]),
        is_late=bool(row["is_late"]),
        message=row["message"],
        budget_source=row["budget_source"],
        budget_id=row["budget_id"],
        projected_period_spend_usd=to_decimal(row["projected_period_spend_usd"]),
        budget_model=_added(row, "budget_model"),
        budget_window=_added(row, "budget_window"),
    )


def _added(row: sqlite3.Row | dict[str, Any], column: str) -> Any:
    """A column of ``_ADDED_COLUMNS``: None in a ledger opened read-only before it was added
    (sqlite3.Row's ``in`` looks at values, so its keys are asked)."""
    return row[column] if column in row.keys() else None  # noqa: SIM118


def load_alerts(conn: sqlite3.Connection) -> list[Alert]:
    """Every alert in the ledger, oldest breach first."""
    rows = conn.execute("select * from alerts order by breached_at, alert_id").fetchall()
    return [alert_from_row(row) for row in rows]
