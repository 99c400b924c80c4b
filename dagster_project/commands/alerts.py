"""``spendwh alerts``: the budget alerts of open periods (or any period), as a readable table.

Reads the alert ledger (``state/alerts.sqlite``) read-only, so it never blocks the pipeline,
and shows where each alert was delivered; ``--retry-failed`` queues deliveries that gave up
again (the only write, a small SQLite transaction). Open pipeline-health problems are printed
first: when alerts cannot be evaluated, an empty list does not mean "within budget".
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from dagster_project.lib.alerts.delivery import requeue_failed
from dagster_project.lib.alerts.ledger import (
    connect_ledger,
    connect_ledger_readonly,
    get_meta,
    ledger_path,
)
from dagster_project.lib.alerts.messages import period_label, usd
from dagster_project.lib.alerts.records import ALERT_TYPES, ENTITY_TYPES, to_decimal
from dagster_project.lib.times import iso, parse_iso
from dagster_project.settings import ConfigError, load_settings

STALE_AFTER = timedelta(hours=1)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="list budget alerts (default: periods still open)",
        description="List budget alerts from the alert ledger, newest breach first.",
    )
    parser.add_argument("--entity-type", choices=ENTITY_TYPES, help="only this kind of entity")
    parser.add_argument("--type", dest="alert_type", choices=ALERT_TYPES, help="only this type")
    parser.add_argument(
        "--period",
        default="current",
        help="'current' (open periods, the default), 'all', or a date YYYY-MM-DD (its periods)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="queue deliveries that gave up (4xx or too many attempts) again, then list",
    )
    parser.set_defaults(func=run)


def period_filter(value: str, now: datetime) -> tuple[str, list[str]]:
    """SQL condition and parameters for ``--period``; a bad value is a :class:`ConfigError`."""
    if value == "all":
        return "1 = 1", []
    if value == "current":
        return "(period_end is null or period_end > ?)", [iso(now)]
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"--period {value!r} is not 'current', 'all' or a date like 2026-11-03"
        ) from exc
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (
        "(period_start is null or period_start < ?) and (period_end is null or period_end > ?)",
        [iso(start + timedelta(days=1)), iso(start)],
    )


def query_alerts(
    conn: sqlite3.Connection,
    *,
    now: datetime,
    period: str = "current",
    entity_type: str | None = None,
    alert_type: str | None = None,
) -> list[dict]:
    """Alerts matching the filters, newest breach first, with their delivery state."""
    where, params = period_filter(period, now)
    if entity_type:
        where += " and entity_type = ?"
        params.append(entity_type)
    if alert_type:
        where += " and alert_type = ?"
        params.append(alert_type)
    rows = conn.execute(
        f"""
        select
            alerts.*,
            (
                select group_concat(destination || ':' || status || ':' || attempts, ',')
                from outbox
                where outbox.message_id = alerts.alert_id
            ) as deliveries
        from alerts
        where {where}
        order by breached_at desc, alert_id
        """,
        params,
    ).fetchall()
    return [dict(row) for row in rows]


def delivery_label(notification: str, deliveries: str | None) -> str:
    """``slack sent, webhook retrying (3)``, ``not sent: no destination`` …"""
    if notification == "history":
        return "not sent: before first run"
    if notification == "no_destination" or not deliveries:
        return "not sent: no destination"
    parts = []
    for item in sorted(deliveries.split(",")):
        name, status, attempts = item.split(":")
        if status == "pending" and int(attempts) > 0:
            status = f"retrying ({attempts})"
        parts.append(f"{name} {status}")
    return ", ".join(parts)


def _display(row: dict) -> dict[str, str]:
    entity = row["entity_id"] if not row["entity_alias"] else f"{row['entity_alias']}"
    kind = row["alert_type"]
    if kind == "threshold":
        kind = f"threshold {row['threshold_pct']}%"
    breached = parse_iso(row["breached_at"])
    return {
        "BREACHED (UTC)": f"{breached:%Y-%m-%d %H:%M}",
        "TYPE": kind + (" (late)" if row["is_late"] else ""),
        "ENTITY": f"{row['entity_type']} {entity}",
        "SPENT": usd(to_decimal(row["period_spend_usd"])),
        "BUDGET": usd(to_decimal(row["threshold_usd"])),
        "PERIOD": period_label(parse_iso(row["period_start"]), parse_iso(row["period_end"])),
        "DELIVERY": delivery_label(row["notification"], row["deliveries"]),
    }


def format_table(rows: Sequence[dict[str, str]]) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    if not rows:
        return ""
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers).rstrip()]
    lines += ["  ".join(r[h].ljust(widths[h]) for h in headers).rstrip() for r in rows]
    return "\n".join(lines)


def health_warnings(conn: sqlite3.Connection, now: datetime) -> list[str]:
    """Open pipeline-health problems and a stale evaluation, as warning lines."""
    warnings = [
        f"PIPELINE HEALTH (since {row['first_seen_at'][:16].replace('T', ' ')}): {row['message']}"
        for row in conn.execute(
            "select first_seen_at, message from health_events where resolved_at is null "
            "order by first_seen_at"
        )
    ]
    last = parse_iso(get_meta(conn, "last_evaluated_at"))
    if last is not None and now - last > STALE_AFTER:
        warnings.append(
            f"WARNING: alerts were last evaluated at {last:%Y-%m-%d %H:%M} UTC; newer spend "
            "is not reflected (is the pipeline running?)"
        )
    return warnings


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    now = datetime.now(UTC)
    if args.retry_failed:
        path = ledger_path(settings.state_dir)
        if not path.exists():
            raise ConfigError(f"no alert ledger at {path}; nothing to retry")
        conn = connect_ledger(path)
        try:
            count = requeue_failed(conn, now)
        finally:
            conn.close()
        print(f"{count} failed deliveries queued again; the sensor sends them on its next tick")
    try:
        conn = connect_ledger_readonly(ledger_path(settings.state_dir))
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        rows = query_alerts(
            conn,
            now=now,
            period=args.period,
            entity_type=args.entity_type,
            alert_type=args.alert_type,
        )
        warnings = health_warnings(conn, now)
    finally:
        conn.close()
    if args.format == "json":
        print(json.dumps({"warnings": warnings, "alerts": rows}, indent=2))
        return 0
    for line in warnings:
        print(line)
    if not rows:
        print(f"no alerts ({args.period} periods)")
        return 0
    print(format_table([_display(row) for row in rows]))
    print(f"\n{len(rows)} alert(s); details: spendwh alerts --format json")
    return 0
