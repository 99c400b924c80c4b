"""A designed scenario for the alert tests: hand-built budget marts and the alerts they justify.

The marts are DuckDB tables with exactly the contract columns of ``fct_budget_periods`` and
``fct_budget_threshold_crossings`` (the dbt models' contract), filled with designed crossings;
:data:`EXPECTED` lists the alerts they justify at :data:`NOW`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

NOW = datetime.fromisoformat("2026-11-20T12:00:00+00:00")

PERIOD_COLUMNS = {
    "budget_period_id": "varchar",
    "entity_type": "varchar",
    "entity_id": "varchar",
    "entity_alias": "varchar",
    "budget_source": "varchar",
    "budget_id": "varchar",
    "budget_model": "varchar",
    "budget_window": "varchar",
    "limit_changed_at": "timestamp",
    "budget_duration": "varchar",
    "period_start": "timestamp",
    "period_end": "timestamp",
    "is_current_period": "boolean",
    "soft_budget_usd": "decimal(38, 10)",
    "max_budget_usd": "decimal(38, 10)",
    "period_spend_usd": "decimal(38, 10)",
    "request_count": "bigint",
    "soft_budget_pct_used": "decimal(38, 10)",
    "max_budget_pct_used": "decimal(38, 10)",
    "soft_budget_crossed_at": "timestamp",
    "max_budget_crossed_at": "timestamp",
    "projected_period_spend_usd": "decimal(38, 10)",
    "projection_basis_days": "integer",
    "first_request_at": "timestamp",
    "last_request_at": "timestamp",
    "evaluated_at": "timestamp",
}
CROSSING_COLUMNS = {
    "crossing_id": "varchar",
    "budget_period_id": "varchar",
    "entity_type": "varchar",
    "entity_id": "varchar",
    "entity_alias": "varchar",
    "crossing_type": "varchar",
    "threshold_pct": "decimal(9, 4)",
    "threshold_usd": "decimal(38, 10)",
    "crossed_at": "timestamp",
    "period_spend_at_crossing_usd": "decimal(38, 10)",
    "period_start": "timestamp",
    "period_end": "timestamp",
}


def ts(text: str) -> datetime:
    """A naive UTC timestamp from ``'2026-11-03 14:00'``."""
    return datetime.fromisoformat(text)


def period(**values: Any) -> dict[str, Any]:
    """A ``fct_budget_periods`` row with defaults for everything not given."""
    row = dict.fromkeys(PERIOD_COLUMNS)
    row.update(
        budget_source={"end_user": "end_user_budget"}.get(
            values["entity_type"], values["entity_type"]
        ),
        budget_duration="30d",
        is_current_period=False,
        evaluated_at=NOW.replace(tzinfo=None),
        period_spend_usd=Decimal(0),
        request_count=0,
    )
    row.update(values)
    if row["budget_period_id"] is None:
        row["budget_period_id"] = f"{row['entity_type']}:{row['entity_id']}:{row['period_start']}"
    return row


def crossing(budget_period: dict[str, Any], crossing_type: str, crossed_at: str, spend: str, **kw):
    """A ``fct_budget_threshold_crossings`` row of ``budget_period``."""
    pct = kw.pop("threshold_pct", None)
    if crossing_type == "soft_budget":
        threshold = budget_period["soft_budget_usd"]
    elif crossing_type == "max_budget":
        threshold = budget_period["max_budget_usd"]
    else:
        threshold = budget_period["max_budget_usd"] * Decimal(pct) / 100
    row = {
        "crossing_id": f"{budget_period['budget_period_id']}:{crossing_type}:{pct}",
        "budget_period_id": budget_period["budget_period_id"],
        "entity_type": budget_period["entity_type"],
        "entity_id": budget_period["entity_id"],
        "entity_alias": budget_period["entity_alias"],
        "crossing_type": crossing_type,
        "threshold_pct": None if pct is None else Decimal(pct),
        "threshold_usd": threshold,
        "crossed_at": ts(crossed_at),
        "period_spend_at_crossing_usd": Decimal(spend),
        "period_start": budget_period["period_start"],
        "period_end": budget_period["period_end"],
    }
    row.update(kw)
    return row


def write_marts(
    path: Path,
    periods: list[dict[str, Any]],
    crossings: list[dict[str, Any]],
    schema: str = "main",
) -> None:
    """(Re)create both marts in the DuckDB file at ``path`` with exactly these rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(path))
    try:
        conn.execute(f'create schema if not exists "{schema}"')
        for name, columns, rows in (
            ("fct_budget_periods", PERIOD_COLUMNS, periods),
            ("fct_budget_threshold_crossings", CROSSING_COLUMNS, crossings),
        ):
            ddl = ", ".join(f"{c} {t}" for c, t in columns.items())
            conn.execute(f'create or replace table "{schema}".{name} ({ddl})')
            if rows:
                marks = ", ".join("?" for _ in columns)
                conn.executemany(
                    f'insert into "{schema}".{name} values ({marks})',
                    [[row[c] for c in columns] for row in rows],
                )
        conn.execute("checkpoint")
    finally:
        conn.close()


# --- a designed scenario ---------------------------------------------------------------------


def designed_marts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Budget marts with designed crossings, evaluated at :data:`NOW` (see EXPECTED)."""
    nov, dec, oct_ = ts("2026-11-01 00:00"), ts("2026-12-01 00:00"), ts("2026-10-01 00:00")
    key_budget = {
        "entity_type": "key",
        "entity_id": "sk-a",
        "entity_alias": "prod-app",
        "budget_id": "b-1",
        "budget_source": "key_budget",
        "soft_budget_usd": Decimal(50),
        "max_budget_usd": Decimal(100),
    }
    user_budget = {
        "entity_type": "user",
        "entity_id": "u-1",
        "entity_alias": "ann@example.com",
        "budget_id": "u-1",
        "max_budget_usd": Decimal(100),
    }
    key_nov = period(
        **key_budget,
        period_start=nov,
        period_end=dec,
        is_current_period=True,
        period_spend_usd=Decimal("104.2"),
        projected_period_spend_usd=Decimal("160"),
        projection_basis_days=19,
        soft_budget_crossed_at=ts("2026-11-05 10:00"),
        max_budget_crossed_at=ts("2026-11-14 09:30"),
        last_request_at=ts("2026-11-20 11:00"),
    )
    key_oct = period(**key_budget, period_start=oct_, period_end=nov, period_spend_usd=Decimal(101))
    team = period(
        entity_type="team",
        entity_id="team-1",
        entity_alias="research",
        budget_id="team-1",
        period_start=nov,
        period_end=dec,
        is_current_period=True,
        max_budget_usd=Decimal(200),
        period_spend_usd=Decimal(120),
        projected_period_spend_usd=Decimal(260),
        projection_basis_days=14,
        last_request_at=ts("2026-11-20 11:45"),
    )
    user = period(
        **user_budget,
        period_start=nov,
        period_end=dec,
        is_current_period=True,
        period_spend_usd=Decimal(40),
        projected_period_spend_usd=Decimal(90),
        projection_basis_days=14,
        last_request_at=ts("2026-11-20 10:00"),
    )
    user_oct = period(
        **user_budget, period_start=oct_, period_end=nov, period_spend_usd=Decimal("99.5")
    )
    end_user = period(
        entity_type="end_user",
        entity_id="cust-9",
        budget_id="eu-b",
        period_start=nov,
        period_end=dec,
        is_current_period=True,
        max_budget_usd=Decimal(10),
        period_spend_usd=Decimal(2),
        projected_period_spend_usd=Decimal(30),
        projection_basis_days=2,
        last_request_at=ts("2026-11-20 08:00"),
    )
    org = period(
        entity_type="organization",
        entity_id="org-1",
        entity_alias="Acme",
        budget_id="ob-1",
        budget_source="organization_budget",
        budget_duration=None,
        period_start=ts("2026-01-01 00:00"),
        period_end=None,
        is_current_period=True,
        max_budget_usd=Decimal(1000),
        period_spend_usd=Decimal(1003),
        max_budget_crossed_at=ts("2026-11-18 16:00"),
    )
    member = period(
        entity_type="team_member",
        entity_id="team-1/u-2",
        entity_alias=None,
        budget_id="mb-1",
        budget_source="team_member_budget",
        period_start=nov,
        period_end=dec,
        is_current_period=True,
        soft_budget_usd=Decimal(20),
        period_spend_usd=Decimal(12),
        projected_period_spend_usd=Decimal(35),
        projection_basis_days=7,
        last_request_at=ts("2026-11-20 09:00"),
    )
    periods = [key_nov, key_oct, team, user, user_oct, end_user, org, member]
    crossings = [
        crossing(key_nov, "soft_budget", "2026-11-05 10:00", "50.3"),
        crossing(key_nov, "threshold", "2026-11-10 08:00", "85.2", threshold_pct=85),
        crossing(key_nov, "threshold", "2026-11-12 17:20", "95.1", threshold_pct=95),
        crossing(key_nov, "max_budget", "2026-11-14 09:30", "100.4"),
        crossing(key_oct, "soft_budget", "2026-10-09 12:00", "50.1"),
        crossing(key_oct, "threshold", "2026-10-15 12:00", "85.0", threshold_pct=85),
        crossing(key_oct, "threshold", "2026-10-18 12:00", "95.5", threshold_pct=95),
        crossing(key_oct, "max_budget", "2026-10-20 07:15", "100.9"),
        crossing(user_oct, "threshold", "2026-10-29 12:00", "86", threshold_pct=85),
        crossing(user_oct, "threshold", "2026-10-31 12:00", "96", threshold_pct=95),
        crossing(org, "threshold", "2026-11-02 12:00", "851", threshold_pct=85),
        crossing(org, "threshold", "2026-11-10 12:00", "951", threshold_pct=95),
        crossing(org, "max_budget", "2026-11-18 16:00", "1003"),
    ]
    return periods, crossings


# (entity_type, entity_id, alert_type, threshold_pct, period_start, breached_at)
EXPECTED = {
    ("key", "sk-a", "soft_budget", None, "2026-11-01 00:00", "2026-11-05 10:00"),
    ("key", "sk-a", "threshold", "85", "2026-11-01 00:00", "2026-11-10 08:00"),
    ("key", "sk-a", "threshold", "95", "2026-11-01 00:00", "2026-11-12 17:20"),
    ("key", "sk-a", "max_budget", None, "2026-11-01 00:00", "2026-11-14 09:30"),
    ("key", "sk-a", "soft_budget", None, "2026-10-01 00:00", "2026-10-09 12:00"),
    ("key", "sk-a", "threshold", "85", "2026-10-01 00:00", "2026-10-15 12:00"),
    ("key", "sk-a", "threshold", "95", "2026-10-01 00:00", "2026-10-18 12:00"),
    ("key", "sk-a", "max_budget", None, "2026-10-01 00:00", "2026-10-20 07:15"),
    ("user", "u-1", "threshold", "85", "2026-10-01 00:00", "2026-10-29 12:00"),
    ("user", "u-1", "threshold", "95", "2026-10-01 00:00", "2026-10-31 12:00"),
    ("organization", "org-1", "threshold", "85", "2026-01-01 00:00", "2026-11-02 12:00"),
    ("organization", "org-1", "threshold", "95", "2026-01-01 00:00", "2026-11-10 12:00"),
    ("organization", "org-1", "max_budget", None, "2026-01-01 00:00", "2026-11-18 16:00"),
    ("team", "team-1", "projected", None, "2026-11-01 00:00", "2026-11-20 11:45"),
    ("team_member", "team-1/u-2", "projected", None, "2026-11-01 00:00", "2026-11-20 09:00"),
}


def alert_signature(alert) -> tuple:
    """The identifying facts of an alert, comparable with :data:`EXPECTED`."""
    from dagster_project.lib.alerts.records import decimal_text

    return (
        alert.entity_type,
        alert.entity_id,
        alert.alert_type,
        decimal_text(alert.threshold_pct),
        f"{alert.period_start:%Y-%m-%d %H:%M}",
        f"{alert.breached_at:%Y-%m-%d %H:%M}",
    )
