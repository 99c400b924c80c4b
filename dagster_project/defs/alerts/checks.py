"""Checks on ``fct_budget_alerts``: the mirror equals the ledger; no delivery gave up."""

from __future__ import annotations

import dagster as dg

from dagster_project.defs.alerts.assets import ALERTS_KEY, open_marts
from dagster_project.defs.resources import SettingsResource
from dagster_project.lib.alerts.ledger import connect_ledger_readonly, ledger_path
from dagster_project.lib.alerts.marts import ALERTS_TABLE


@dg.asset_check(asset=ALERTS_KEY, description="The DuckDB mirror holds exactly the ledger's ids.")
def mirror_matches_ledger(settings: SettingsResource) -> dg.AssetCheckResult:
    """Same alert_id set in ``fct_budget_alerts`` and the ledger, and no id twice."""
    settings = settings.get()
    ledger = connect_ledger_readonly(ledger_path(settings.state_dir))
    try:
        ledger_ids = {row[0] for row in ledger.execute("select alert_id from alerts")}
    finally:
        ledger.close()
    with open_marts(settings) as (conn, schema, _):
        query = f'select alert_id from "{schema}".{ALERTS_TABLE}'
        mirror = [row[0] for row in conn.execute(query).fetchall()]
    duplicates = len(mirror) - len(set(mirror))
    missing, extra = ledger_ids - set(mirror), set(mirror) - ledger_ids
    return dg.AssetCheckResult(
        passed=not (duplicates or missing or extra),
        metadata={
            "ledger_rows": len(ledger_ids),
            "mirror_rows": len(mirror),
            "duplicate_ids": duplicates,
            "missing_from_mirror": len(missing),
            "not_in_ledger": len(extra),
        },
    )


@dg.asset_check(
    asset=ALERTS_KEY,
    description="No alert has exhausted its delivery attempts (or hit a permanent 4xx).",
)
def no_failed_deliveries(settings: SettingsResource) -> dg.AssetCheckResult:
    """Warn about outbox rows in state ``failed``; they stay in the ledger for an operator."""
    ledger = connect_ledger_readonly(ledger_path(settings.get().state_dir))
    try:
        rows = ledger.execute(
            "select message_id, destination, attempts, last_error from outbox "
            "where status = 'failed' order by created_at limit 20"
        ).fetchall()
    finally:
        ledger.close()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": len(rows),
            "examples": [f"{r[0]} → {r[1]} after {r[2]} attempt(s): {r[3]}" for r in rows],
        },
    )
