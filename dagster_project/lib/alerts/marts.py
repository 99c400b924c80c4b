"""Where the alert evaluation reads the budget marts and writes the ``fct_budget_alerts`` table.

The marts live where dbt built them: the build DuckDB (default target) or a PostgreSQL schema
(``DBT_TARGET=postgres``). Reading uses the same SQL on both (DB-API connections whose
``execute`` returns a cursor: DuckDB and psycopg 3). The alerts table is a mirror of the ledger,
replaced atomically after each evaluation beside the marts, with every column described.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa

from dagster_project.lib.alerts.records import Alert, BudgetCrossing, BudgetPeriod
from dagster_project.lib.times import as_utc

PERIODS_MODEL = "fct_budget_periods"
CROSSINGS_MODEL = "fct_budget_threshold_crossings"
ALERTS_TABLE = "fct_budget_alerts"

# The contract of the table (same column order as lib.alerts.CONTRACT_COLUMNS):
# name, type, description.
ALERTS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("alert_id", "varchar", "Stable id of the breach (entity, budget, period, type, threshold)."),
    (
        "entity_type",
        "varchar",
        "key, team, organization, user, end_user, team_member, tag or project.",
    ),
    ("entity_id", "varchar", "The entity's id (team members: team_id/user_id)."),
    ("entity_alias", "varchar", "The entity's alias or e-mail, when it has one."),
    ("alert_type", "varchar", "soft_budget, max_budget, threshold or projected."),
    ("threshold_usd", "decimal(38, 10)", "The limit crossed (projected: the budget forecast)."),
    ("threshold_pct", "decimal(9, 4)", "Percent of the max budget (threshold alerts only)."),
    ("period_start", "timestamp", "Start of the budget period (UTC)."),
    ("period_end", "timestamp", "End of the budget period (UTC); null = open-ended budget."),
    ("breached_at", "timestamp", "startTime of the request that crossed (projected: forecast)."),
    ("period_spend_usd", "decimal(38, 10)", "Spend in the period at the crossing (USD)."),
    ("detected_at", "timestamp", "Evaluation instant that first found the alert (UTC)."),
    ("is_late", "boolean", "True when first found after its period had closed."),
    ("message", "varchar", "Who, how much, which budget and period, and what to do."),
)
ALERTS_TABLE_DESCRIPTION = (
    "Budget alerts: one row per entity, budget, period, alert type and threshold. A mirror of "
    "the durable ledger state/alerts.sqlite, rewritten after every evaluation."
)


class MartsMissingError(RuntimeError):
    """The budget marts are not (or not unambiguously) in the database."""


def find_mart_schema(conn: Any, where: str) -> str:
    """The one schema holding both budget marts; ``where`` names the database for errors."""
    rows = conn.execute(
        "select table_schema from information_schema.tables "
        f"where table_catalog = current_database() "
        f"and table_name in ('{PERIODS_MODEL}', '{CROSSINGS_MODEL}') "
        "group by table_schema having count(*) = 2 order by table_schema"
    ).fetchall()
    if len(rows) != 1:
        found = ", ".join(r[0] for r in rows) or "none"
        raise MartsMissingError(
            f"expected the dbt marts {PERIODS_MODEL} and {CROSSINGS_MODEL} in exactly one "
            f"schema of {where} (found: {found}); run the dbt marts first ('spendwh run')"
        )
    return rows[0][0]


def _records(conn: Any, sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_marts(conn: Any, schema: str) -> tuple[list[BudgetCrossing], list[BudgetPeriod]]:
    """Crossings (joined to their budget) and current periods: the inputs of the decision."""
    crossings = _records(
        conn,
        f"""
        select
            crossings.crossing_id,
            crossings.budget_period_id,
            crossings.entity_type,
            crossings.entity_id,
            crossings.entity_alias,
            crossings.crossing_type,
            crossings.threshold_pct,
            crossings.threshold_usd,
            crossings.crossed_at,
            crossings.period_spend_at_crossing_usd,
            crossings.period_start,
            crossings.period_end,
            periods.budget_source,
            periods.budget_id,
            periods.budget_model,
            periods.budget_window,
            periods.limit_changed_at
        from "{schema}".{CROSSINGS_MODEL} as crossings
        inner join "{schema}".{PERIODS_MODEL} as periods
            on crossings.budget_period_id = periods.budget_period_id
        """,
    )
    periods = _records(
        conn,
        f"select {', '.join(BudgetPeriod.columns())} "
        f'from "{schema}".{PERIODS_MODEL} where is_current_period',
    )
    return (
        [BudgetCrossing.from_row(row) for row in crossings],
        [BudgetPeriod.from_row(row) for row in periods],
    )


def _naive_utc(value: datetime | None) -> datetime | None:
    value = as_utc(value)
    return None if value is None else value.replace(tzinfo=None)


def contract_rows(alerts: Iterable[Alert]) -> list[tuple[Any, ...]]:
    """The contract columns of ``alerts`` as tuples; timestamps naive UTC like the marts."""
    rows = []
    for alert in alerts:
        row = alert.contract_row()
        rows.append(
            tuple(
                _naive_utc(row[name]) if isinstance(row[name], datetime) else row[name]
                for name, _, _ in ALERTS_COLUMNS
            )
        )
    return rows


def _arrow(alerts: Iterable[Alert]) -> pa.Table:
    """Arrow table of the contract rows (money as text, cast exactly by DuckDB)."""
    money = {"threshold_usd", "threshold_pct", "period_spend_usd"}
    types = {"timestamp": pa.timestamp("us"), "boolean": pa.bool_()}
    columns = list(zip(*contract_rows(alerts), strict=True)) or [()] * len(ALERTS_COLUMNS)
    arrays = {}
    for (name, typ, _), values in zip(ALERTS_COLUMNS, columns, strict=True):
        if name in money:
            values = [None if v is None else str(v) for v in values]
        arrays[name] = pa.array(list(values), types.get(typ, pa.string()))
    return pa.table(arrays)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comments(table: str) -> list[str]:
    statements = [f"comment on table {table} is {_sql_text(ALERTS_TABLE_DESCRIPTION)}"]
    statements += [
        f"comment on column {table}.{name} is {_sql_text(description)}"
        for name, _, description in ALERTS_COLUMNS
    ]
    return statements


def mirror_to_duckdb(conn: Any, schema: str, alerts: list[Alert]) -> int:
    """Replace ``<schema>.fct_budget_alerts`` in DuckDB with ``alerts``, in one transaction."""
    conn.register("_alerts_mirror_source", _arrow(alerts))
    casts = ",\n    ".join(f"cast({name} as {typ}) as {name}" for name, typ, _ in ALERTS_COLUMNS)
    table = f'"{schema}".{ALERTS_TABLE}'
    conn.execute("begin transaction")
    try:
        conn.execute(
            f"create or replace table {table} as\nselect\n    {casts}\n"
            "from _alerts_mirror_source order by breached_at, alert_id"
        )
        for statement in _comments(table):
            conn.execute(statement)
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    finally:
        conn.unregister("_alerts_mirror_source")
    return len(alerts)


def mirror_to_postgres(conn: Any, schema: str, alerts: list[Alert]) -> int:
    """Replace ``<schema>.fct_budget_alerts`` in PostgreSQL (psycopg 3), in one transaction."""
    table = f'"{schema}".{ALERTS_TABLE}'
    columns = ", ".join(f"{name} {typ}" for name, typ, _ in ALERTS_COLUMNS)
    marks = ", ".join("%s" for _ in ALERTS_COLUMNS)
    rows = sorted(contract_rows(alerts), key=lambda row: (row[9], row[0]))
    with conn.transaction():
        conn.execute(f"drop table if exists {table}")
        conn.execute(f"create table {table} ({columns}, primary key (alert_id))")
        with conn.cursor() as cursor:
            cursor.executemany(f"insert into {table} values ({marks})", rows)
        for statement in _comments(table):
            conn.execute(statement)
    return len(alerts)
