"""Which alerts the marts justify at a given time: pure decision rules.

Nothing here touches a database, the network or the clock: callers pass records and ``now``.

- :func:`crossing_alert` turns one limit crossing into an alert;
- :func:`projected_alert` decides the forecast alert of one current budget period;
- :func:`decide_alerts` keeps one alert per identity (the earliest breach);
- :func:`failed_check_problems` turns failed asset checks into health problems.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from dagster_project.lib.alerts.messages import alert_message
from dagster_project.lib.alerts.records import (
    DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
    Alert,
    BudgetCrossing,
    BudgetPeriod,
    BudgetSubject,
    HealthProblem,
    alert_id,
)
from dagster_project.lib.times import as_utc

# --- decisions ---------------------------------------------------------------------------------


def _is_late(period_end: datetime | None, now: datetime) -> bool:
    return period_end is not None and as_utc(period_end) <= as_utc(now)


def crossing_alert(crossing: BudgetCrossing, now: datetime) -> Alert:
    """The alert of one limit crossing.

    ``now`` is the evaluation time: it becomes ``detected_at``, and the alert is late when its
    period had already ended by then.
    """
    alert_type = crossing.crossing_type
    if alert_type not in {"soft_budget", "max_budget", "threshold"}:
        raise ValueError(
            f"crossing {crossing.crossing_id!r} has crossing_type {alert_type!r}; "
            "expected soft_budget, max_budget or threshold"
        )
    if alert_type == "threshold" and crossing.threshold_pct is None:
        raise ValueError(f"threshold crossing {crossing.crossing_id!r} has no threshold_pct")
    threshold = crossing.threshold_pct if alert_type == "threshold" else None
    return _budget_alert(
        crossing.subject,
        alert_type=alert_type,
        threshold=threshold,
        threshold_usd=crossing.threshold_usd,
        threshold_pct=threshold,
        period_start=crossing.period_start,
        period_end=crossing.period_end,
        breached_at=crossing.crossed_at,
        period_spend_usd=crossing.period_spend_at_crossing_usd,
        detected_at=as_utc(now),
        is_late=_is_late(crossing.period_end, now),
        limit_changed_at=crossing.limit_changed_at,
    )


def projected_target(period: BudgetPeriod) -> tuple[str, Decimal] | None:
    """The budget a forecast is compared with: the max budget, else the soft budget."""
    if period.max_budget_usd is not None:
        return "max_budget", period.max_budget_usd
    if period.soft_budget_usd is not None:
        return "soft_budget", period.soft_budget_usd
    return None


def projected_alert(
    period: BudgetPeriod,
    now: datetime,
    *,
    min_basis_days: float = DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    min_elapsed_fraction: float = DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
) -> Alert | None:
    """The ``projected`` alert of one budget period, or ``None``.

    Fires when the current period's forecast (``projected_period_spend_usd``, day-of-week aware,
    computed by dbt) exceeds the max budget (the soft budget where there is no max) while actual
    spend has not crossed it yet, and only with enough history: ``projection_basis_days`` of at
    least ``min_basis_days`` and at least ``min_elapsed_fraction`` of the period elapsed.
    Open-ended budgets have no period end to forecast to. The ledger keeps it to one per period.
    """
    now = as_utc(now)
    start, end = period.period_start, period.period_end
    target = projected_target(period)
    if not period.is_current_period or start is None or end is None or target is None:
        return None
    kind, budget = target
    crossed_at = (
        period.max_budget_crossed_at if kind == "max_budget" else period.soft_budget_crossed_at
    )
    projected, spend = period.projected_period_spend_usd, period.period_spend_usd
    if projected is None or crossed_at is not None or spend >= budget or projected <= budget:
        return None
    if period.projection_basis_days is None or period.projection_basis_days < min_basis_days:
        return None
    if not start <= now < end:
        return None
    if (now - start) / (end - start) < min_elapsed_fraction:
        return None
    return _budget_alert(
        period.subject,
        alert_type="projected",
        threshold=kind,
        threshold_usd=budget,
        threshold_pct=None,
        period_start=start,
        period_end=end,
        breached_at=period.last_request_at or now,
        period_spend_usd=spend,
        detected_at=now,
        is_late=False,
        projected_period_spend_usd=projected,
        projected_budget=kind,
    )


def _budget_alert(
    subject: BudgetSubject,
    *,
    alert_type: str,
    threshold: str | Decimal | None,
    threshold_usd: Decimal | None,
    threshold_pct: Decimal | None,
    period_start: datetime | None,
    period_end: datetime | None,
    breached_at: datetime,
    period_spend_usd: Decimal,
    detected_at: datetime,
    is_late: bool,
    projected_period_spend_usd: Decimal | None = None,
    projected_budget: str | None = None,
    limit_changed_at: datetime | None = None,
) -> Alert:
    """The alert of one breach of ``subject``'s budget: its identity, columns and message.

    ``threshold`` is the ``alert_id`` distinguisher (see :func:`alert_id`).
    """
    alert = Alert(
        alert_id=alert_id(
            entity_type=subject.entity_type,
            entity_id=subject.entity_id,
            budget_source=subject.budget_source,
            budget_id=subject.budget_id,
            period_start=period_start,
            period_end=period_end,
            alert_type=alert_type,
            threshold=threshold,
            budget_model=subject.budget_model,
            budget_window=subject.budget_window,
        ),
        entity_type=subject.entity_type,
        entity_id=subject.entity_id,
        entity_alias=subject.entity_alias,
        alert_type=alert_type,
        threshold_usd=threshold_usd,
        threshold_pct=threshold_pct,
        period_start=period_start,
        period_end=period_end,
        breached_at=breached_at,
        period_spend_usd=period_spend_usd,
        detected_at=detected_at,
        is_late=is_late,
        message="",
        budget_source=subject.budget_source,
        budget_id=subject.budget_id,
        projected_period_spend_usd=projected_period_spend_usd,
        projected_budget=projected_budget,
        budget_model=subject.budget_model,
        budget_window=subject.budget_window,
        limit_changed_at=limit_changed_at,
    )
    return replace(alert, message=alert_message(alert))


def decide_alerts(
    crossings: Iterable[BudgetCrossing],
    periods: Iterable[BudgetPeriod],
    now: datetime,
    *,
    min_basis_days: float = DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    min_elapsed_fraction: float = DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
) -> list[Alert]:
    """Every alert the marts justify at ``now``, one per ``alert_id`` (earliest breach wins)."""
    alerts: dict[str, Alert] = {}
    candidates = [crossing_alert(crossing, now) for crossing in crossings]
    for period in periods:
        projected = projected_alert(
            period, now, min_basis_days=min_basis_days, min_elapsed_fraction=min_elapsed_fraction
        )
        if projected is not None:
            candidates.append(projected)
    for alert in candidates:
        kept = alerts.get(alert.alert_id)
        if kept is None or alert.breached_at < kept.breached_at:
            alerts[alert.alert_id] = alert
    return sorted(alerts.values(), key=lambda a: (a.breached_at, a.alert_id))


# --- upstream health ---------------------------------------------------------------------------


def check_evaluation(data: Any, status: str) -> dict[str, Any]:
    """One evaluation of an asset check (Dagster's ``AssetCheckEvaluation``) as
    :func:`failed_check_problems` reads it."""
    return {
        "check": f"{data.asset_key.to_user_string()}:{data.check_name}",
        "status": status,
        "passed": data.passed,
        "severity": data.severity.value,
        "description": data.description,
    }


def failed_check_problems(evaluations: Iterable[Mapping[str, Any]]) -> list[HealthProblem]:
    """Problems among the latest upstream check results.

    Each evaluation has ``check`` (a readable name), ``status`` (``SUCCEEDED``, ``FAILED`` or
    ``EXECUTION_FAILED`` when the check never produced a result because its run failed),
    ``passed`` (bool or None) and ``severity`` (``ERROR`` or ``WARN``). A check that could not
    execute, or that evaluated to failed with severity ERROR, blocks alerting; warnings do not.
    """
    problems = []
    for ev in evaluations:
        failed_error = ev.get("passed") is False and ev.get("severity", "ERROR") == "ERROR"
        if ev.get("status") == "EXECUTION_FAILED" or failed_error:
            detail = f": {ev['description']}" if ev.get("description") else ""
            problems.append(
                HealthProblem(
                    key=f"check:{ev['check']}",
                    message=f"upstream check {ev['check']} failed{detail}",
                )
            )
    return sorted(problems, key=lambda p: p.key)
