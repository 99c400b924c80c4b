"""Budget alerts as pure functions: identity, decision rules, messages and payloads.

Nothing here touches a database, the network or the clock: callers pass rows and ``now``.

- :func:`alert_id` is the alert's identity. It hashes what makes a breach *the same breach*
  (entity, budget, period, alert type, threshold) and nothing that changes when data is
  re-processed, so re-runs, backfills and full rebuilds find the same id.
- :func:`crossing_alert` turns one row of ``fct_budget_threshold_crossings`` into an alert;
  :func:`projected_alert` decides the forecast alert from one row of ``fct_budget_periods``.
- :func:`json_payload` / :func:`slack_payload` build what the destinations receive, and
  :func:`redact` keeps webhook URLs (they are secrets) out of every log line and error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

ENTITY_TYPES = ("key", "team", "organization", "user", "end_user", "team_member")
ALERT_TYPES = ("soft_budget", "max_budget", "threshold", "projected")
DEFAULT_PROJECTION_MIN_BASIS_DAYS = 3
DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION = 0.1

CONTRACT_COLUMNS = (
    "alert_id",
    "entity_type",
    "entity_id",
    "entity_alias",
    "alert_type",
    "threshold_usd",
    "threshold_pct",
    "period_start",
    "period_end",
    "breached_at",
    "period_spend_usd",
    "detected_at",
    "is_late",
    "message",
)

_ENTITY_LABELS = {
    "key": "Key",
    "team": "Team",
    "organization": "Organization",
    "user": "User",
    "end_user": "End user",
    "team_member": "Team member",
}


@dataclass(frozen=True)
class Alert:
    """One breach: the contract columns plus the budget it belongs to.

    ``detected_at`` and ``is_late`` describe the evaluation that first saw the breach; the
    ledger keeps the first values forever, so later evaluations never change them.
    """

    alert_id: str
    entity_type: str
    entity_id: str
    entity_alias: str | None
    alert_type: str
    threshold_usd: Decimal | None
    threshold_pct: Decimal | None
    period_start: datetime | None
    period_end: datetime | None
    breached_at: datetime
    period_spend_usd: Decimal
    detected_at: datetime
    is_late: bool
    message: str
    budget_source: str | None = None
    budget_id: str | None = None
    projected_period_spend_usd: Decimal | None = None

    def contract_row(self) -> dict[str, Any]:
        """The contract columns only, in contract order."""
        row = asdict(self)
        return {name: row[name] for name in CONTRACT_COLUMNS}


@dataclass(frozen=True)
class HealthProblem:
    """Why alerts cannot be trusted right now (a failed check, stale or missing data)."""

    key: str  # stable identity of the problem, e.g. "check:raw/spend_logs:freshness"
    message: str


# --- small conversions -------------------------------------------------------------------------


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are UTC, as everywhere in the warehouse)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """Canonical text form of a timestamp: UTC, microseconds, ``Z`` suffix (sorts correctly)."""
    value = as_utc(value)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`iso`."""
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def to_decimal(value: Any) -> Decimal | None:
    """Exact decimal of a money or percent value; floats go through their shortest repr."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def decimal_text(value: Decimal | None) -> str | None:
    """Canonical text of a decimal (``85``, ``85.0`` and ``85.00`` all give ``'85'``)."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def usd(value: Decimal | None) -> str:
    """Money for people: ``$1,234.57`` (cents; sub-cent amounts keep four decimals)."""
    if value is None:
        return "n/a"
    if Decimal("0") < abs(value) < Decimal("0.01"):
        return f"${value:,.4f}"
    return f"${value:,.2f}"


def pct(value: Decimal | None) -> str:
    """A percentage for people: ``85%`` or ``87.5%``."""
    return "n/a" if value is None else f"{decimal_text(value)}%"


# --- identity ----------------------------------------------------------------------------------


def alert_id(
    *,
    entity_type: str,
    entity_id: str,
    budget_source: str | None,
    budget_id: str | None,
    period_start: datetime | None,
    period_end: datetime | None,
    alert_type: str,
    threshold: str | Decimal | None,
) -> str:
    """Stable identity of one breach: same inputs, same id, in every process and every run.

    A budget without duration has one open-ended period (``period_end`` is None); its start
    is left out, because a late request older than the first one known can move it.
    ``threshold`` distinguishes alerts of one type within a period: the percentage for
    ``threshold`` alerts, the budget kind (``max_budget``/``soft_budget``) for ``projected``
    alerts, and nothing for ``soft_budget``/``max_budget`` (one per period). Amounts are
    deliberately left out: editing a budget mid-period does not re-open an alert that fired.
    """
    if alert_type not in ALERT_TYPES:
        raise ValueError(f"unknown alert_type {alert_type!r}; expected one of {ALERT_TYPES}")
    token = decimal_text(threshold) if isinstance(threshold, Decimal) else (threshold or "")
    parts = (
        "v1",
        entity_type,
        entity_id,
        budget_source or "",
        budget_id or "",
        "open-ended" if period_end is None else iso(period_start) or "",
        alert_type,
        token,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# --- messages ----------------------------------------------------------------------------------


def entity_label(entity_type: str, entity_id: str, entity_alias: str | None) -> str:
    """``Team 'research' (team-1)``; keys (token hashes) are shortened to 12 characters."""
    label = _ENTITY_LABELS.get(entity_type, entity_type)
    shown = entity_id
    if entity_type == "key" and len(entity_id) > 16:  # a SHA-256 token hash: its prefix will do
        shown = entity_id[:12] + "…"
    if entity_alias and entity_alias != entity_id:
        return f"{label} '{entity_alias}' ({shown})"
    return f"{label} {shown}"


def period_label(start: datetime | None, end: datetime | None) -> str:
    """``2026-11-01 00:00 → 2026-12-01 00:00 UTC`` or ``open-ended (no reset)``."""
    if start is None and end is None:
        return "open-ended (no reset)"
    fmt = "%Y-%m-%d %H:%M"
    left = as_utc(start).strftime(fmt) if start else "start"
    right = as_utc(end).strftime(fmt) if end else "open-ended"
    return f"{left} → {right} UTC"


_BUDGET_SOURCES = {
    "key": "the key's own limits",
    "key_budget": "the key's budget",
    "team": "the team's limits",
    "organization_budget": "the organization's budget",
    "user": "the user's limits",
    "end_user_budget": "the end user's budget",
    "end_user_default": "the proxy-wide end-user default budget",
    "team_member_budget": "the team membership's budget",
}


def budget_label(budget_source: str | None, budget_id: str | None) -> str:
    """Where the limit comes from, e.g. ``the key's budget b-1``."""
    if not budget_source:
        return ""
    label = _BUDGET_SOURCES.get(budget_source, budget_source.replace("_", " "))
    if budget_id and label.endswith("budget"):
        label += f" {budget_id}"
    return label


def _advice(alert_type: str, entity_type: str, period_end: datetime | None, closed: bool) -> str:
    if closed:
        return (
            f"The period has ended and the budget reset at {as_utc(period_end):%Y-%m-%d %H:%M} "
            "UTC: nothing is blocked now, but review why spend went over and whether the "
            "budget fits."
        )
    reset = (
        f"the budget resets at {as_utc(period_end):%Y-%m-%d %H:%M} UTC"
        if period_end
        else "this budget never resets"
    )
    if alert_type == "max_budget":
        return (
            f"The proxy rejects further requests for this {entity_type.replace('_', ' ')} "
            f"until the max budget is raised ({reset})."
        )
    if alert_type == "threshold":
        return (
            "At 100% the proxy starts rejecting requests: review the usage, or raise the max "
            f"budget before it runs out ({reset})."
        )
    if alert_type == "soft_budget":
        return f"Requests still go through: review the usage or raise the soft budget ({reset})."
    return (
        "Nothing is blocked yet: reduce usage or raise the budget before the period ends "
        f"({reset})."
    )


def alert_message(
    *,
    alert_type: str,
    entity_type: str,
    entity_id: str,
    entity_alias: str | None,
    threshold_usd: Decimal | None,
    threshold_pct: Decimal | None,
    period_start: datetime | None,
    period_end: datetime | None,
    breached_at: datetime,
    period_spend_usd: Decimal,
    is_late: bool,
    budget_source: str | None = None,
    budget_id: str | None = None,
    projected_period_spend_usd: Decimal | None = None,
    projected_budget: str | None = None,
) -> str:
    """One readable paragraph: who, how much, which budget, which period, and what to do."""
    who = entity_label(entity_type, entity_id, entity_alias)
    when = f"{as_utc(breached_at):%Y-%m-%d %H:%M} UTC"
    if alert_type == "max_budget":
        what = f"reached its max budget of {usd(threshold_usd)} on {when}"
    elif alert_type == "soft_budget":
        what = f"crossed its soft budget of {usd(threshold_usd)} on {when}"
    elif alert_type == "threshold":
        what = f"used {pct(threshold_pct)} of its max budget ({usd(threshold_usd)}) on {when}"
    else:
        kind = (projected_budget or "max_budget").replace("_", " ")
        what = (
            f"is forecast to spend {usd(projected_period_spend_usd)} by the end of the period, "
            f"above its {kind} of {usd(threshold_usd)} (forecast as of {when})"
        )
    source = budget_label(budget_source, budget_id)
    source = f" (limit from {source})" if source else ""
    text = (
        f"{who} {what}{source}: {usd(period_spend_usd)} spent in the period "
        f"{period_label(period_start, period_end)}. "
        f"{_advice(alert_type, entity_type, period_end, closed=is_late)}"
    )
    if is_late:
        text += " Detected late: first seen after the period had closed."
    return text


# --- decisions ---------------------------------------------------------------------------------


def _is_late(period_end: datetime | None, now: datetime) -> bool:
    return period_end is not None and as_utc(period_end) <= as_utc(now)


def crossing_alert(crossing: Mapping[str, Any], now: datetime) -> Alert:
    """The alert for one row of ``fct_budget_threshold_crossings`` joined to its budget.

    ``crossing`` carries the crossings columns plus ``budget_source`` and ``budget_id`` of the
    budget period. ``now`` is the evaluation time: it becomes ``detected_at``, and the alert is
    late when its period had already ended by then.
    """
    alert_type = crossing["crossing_type"]
    if alert_type not in {"soft_budget", "max_budget", "threshold"}:
        raise ValueError(
            f"crossing {crossing.get('crossing_id')!r} has crossing_type {alert_type!r}; "
            "expected soft_budget, max_budget or threshold"
        )
    threshold_pct = to_decimal(crossing.get("threshold_pct"))
    if alert_type == "threshold" and threshold_pct is None:
        raise ValueError(f"threshold crossing {crossing.get('crossing_id')!r} has no threshold_pct")
    threshold = threshold_pct if alert_type == "threshold" else None
    period_start = as_utc(crossing.get("period_start"))
    period_end = as_utc(crossing.get("period_end"))
    return _budget_alert(
        crossing,
        alert_type=alert_type,
        threshold=threshold,
        threshold_usd=to_decimal(crossing.get("threshold_usd")),
        threshold_pct=threshold,
        period_start=period_start,
        period_end=period_end,
        breached_at=as_utc(crossing["crossed_at"]),
        period_spend_usd=to_decimal(crossing["period_spend_at_crossing_usd"]),
        detected_at=as_utc(now),
        is_late=_is_late(period_end, now),
    )


def projected_target(period: Mapping[str, Any]) -> tuple[str, Decimal] | None:
    """The budget a forecast is compared with: the max budget, else the soft budget."""
    max_budget = to_decimal(period.get("max_budget_usd"))
    if max_budget is not None:
        return "max_budget", max_budget
    soft_budget = to_decimal(period.get("soft_budget_usd"))
    if soft_budget is not None:
        return "soft_budget", soft_budget
    return None


def projected_alert(
    period: Mapping[str, Any],
    now: datetime,
    *,
    min_basis_days: float = DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    min_elapsed_fraction: float = DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
) -> Alert | None:
    """The ``projected`` alert for one row of ``fct_budget_periods``, or ``None``.

    Fires when the current period's forecast (``projected_period_spend_usd``, day-of-week aware,
    computed by dbt) exceeds the max budget (the soft budget where there is no max) while actual
    spend has not crossed it yet, and only with enough history: ``projection_basis_days`` of at
    least ``min_basis_days`` and at least ``min_elapsed_fraction`` of the period elapsed.
    Open-ended budgets have no period end to forecast to. The ledger keeps it to one per period.
    """
    now = as_utc(now)
    start, end = as_utc(period.get("period_start")), as_utc(period.get("period_end"))
    target = projected_target(period)
    projected = to_decimal(period.get("projected_period_spend_usd"))
    spend = to_decimal(period.get("period_spend_usd")) or Decimal(0)
    if not period.get("is_current_period") or start is None or end is None or target is None:
        return None
    kind, budget = target
    crossed_at = period.get(f"{kind}_crossed_at")
    if projected is None or crossed_at is not None or spend >= budget or projected <= budget:
        return None
    basis_days = period.get("projection_basis_days")
    if basis_days is None or float(basis_days) < min_basis_days:
        return None
    if not start <= now < end:
        return None
    if (now - start) / (end - start) < min_elapsed_fraction:
        return None
    return _budget_alert(
        period,
        alert_type="projected",
        threshold=kind,
        threshold_usd=budget,
        threshold_pct=None,
        period_start=start,
        period_end=end,
        breached_at=as_utc(period.get("last_request_at")) or now,
        period_spend_usd=spend,
        detected_at=now,
        is_late=False,
        projected_period_spend_usd=projected,
        projected_budget=kind,
    )


def _budget_alert(
    row: Mapping[str, Any],
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
) -> Alert:
    """The alert of one budget row (a crossing or a period): identity, message and columns.

    ``row`` gives the entity (``entity_type``, ``entity_id``, ``entity_alias``) and the budget
    (``budget_source``, ``budget_id``); ``threshold`` is the ``alert_id`` distinguisher.
    """
    entity = {
        "entity_type": row["entity_type"],
        "entity_id": str(row["entity_id"]),
        "entity_alias": row.get("entity_alias"),
    }
    budget = {"budget_source": row.get("budget_source"), "budget_id": _text(row.get("budget_id"))}
    breach = {
        "alert_type": alert_type,
        "threshold_usd": threshold_usd,
        "threshold_pct": threshold_pct,
        "period_start": period_start,
        "period_end": period_end,
        "breached_at": breached_at,
        "period_spend_usd": period_spend_usd,
        "is_late": is_late,
    }
    projection = {"projected_period_spend_usd": projected_period_spend_usd}
    return Alert(
        alert_id=alert_id(
            entity_type=entity["entity_type"],
            entity_id=entity["entity_id"],
            **budget,
            period_start=period_start,
            period_end=period_end,
            alert_type=alert_type,
            threshold=threshold,
        ),
        **entity,
        **breach,
        **budget,
        **projection,
        detected_at=detected_at,
        message=alert_message(
            **entity, **breach, **budget, **projection, projected_budget=projected_budget
        ),
    )


def decide_alerts(
    crossings: Iterable[Mapping[str, Any]],
    periods: Iterable[Mapping[str, Any]],
    now: datetime,
    *,
    min_basis_days: float = DEFAULT_PROJECTION_MIN_BASIS_DAYS,
    min_elapsed_fraction: float = DEFAULT_PROJECTION_MIN_ELAPSED_FRACTION,
) -> list[Alert]:
    """Every alert the marts justify at ``now``, one per ``alert_id`` (earliest breach wins)."""
    alerts: dict[str, Alert] = {}
    candidates = [crossing_alert(row, now) for row in crossings]
    for row in periods:
        projected = projected_alert(
            row, now, min_basis_days=min_basis_days, min_elapsed_fraction=min_elapsed_fraction
        )
        if projected is not None:
            candidates.append(projected)
    for alert in candidates:
        kept = alerts.get(alert.alert_id)
        if kept is None or alert.breached_at < kept.breached_at:
            alerts[alert.alert_id] = alert
    return sorted(alerts.values(), key=lambda a: (a.breached_at, a.alert_id))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


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


def health_message(problems: Iterable[HealthProblem]) -> str:
    """The pipeline-health alert text: alerts are NOT evaluated, which is not 'within budget'."""
    lines = [p.message for p in problems]
    return (
        "Budget alerts were not evaluated because the spend data cannot be trusted: "
        + "; ".join(lines)
        + ". Until this is fixed the budget status is unknown: budgets may be exceeded without "
        "an alert; this is not 'within budget'."
    )


# --- payloads and secrets ----------------------------------------------------------------------


def json_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook body: the contract columns plus ``idempotency_key`` (= alert_id)."""
    row = alert.contract_row()
    body: dict[str, Any] = {"event": "budget_alert", "idempotency_key": alert.alert_id}
    for name, value in row.items():
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, Decimal):
            value = float(value)
        body[name] = value
    body["budget_source"] = alert.budget_source
    body["budget_id"] = alert.budget_id
    if alert.projected_period_spend_usd is not None:
        body["projected_period_spend_usd"] = float(alert.projected_period_spend_usd)
    return body


_TITLES = {
    "max_budget": ":no_entry: Max budget reached",
    "soft_budget": ":warning: Soft budget crossed",
    "threshold": ":warning: Budget threshold crossed",
    "projected": ":crystal_ball: Budget forecast to be exceeded",
}


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message: a plain ``text`` fallback plus readable blocks."""
    title = _TITLES[alert.alert_type]
    if alert.alert_type == "threshold":
        title += f" ({pct(alert.threshold_pct)})"
    if alert.is_late:
        title += " (late)"
    who = entity_label(alert.entity_type, alert.entity_id, alert.entity_alias)
    fields = [
        ("Who", who),
        ("Spent in period", usd(alert.period_spend_usd)),
        ("Budget", usd(alert.threshold_usd)),
        ("Period", period_label(alert.period_start, alert.period_end)),
    ]
    return {
        "text": f"{title}: {alert.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:3000]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"[:2000]}
                    for name, value in fields
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"alert_id `{alert.alert_id}`"}],
            },
        ],
    }


def health_json_payload(event_id: str, message: str, first_seen_at: datetime) -> dict[str, Any]:
    """The generic webhook body of a pipeline-health alert."""
    return {
        "event": "pipeline_health",
        "idempotency_key": event_id,
        "health_event_id": event_id,
        "first_seen_at": iso(first_seen_at),
        "message": message,
    }


def health_slack_payload(event_id: str, message: str, first_seen_at: datetime) -> dict[str, Any]:
    """The Slack message of a pipeline-health alert."""
    title = ":rotating_light: Spend warehouse: budget alerts are not being evaluated"
    return {
        "text": f"{title}: {message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message[:3000]}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"since {iso(first_seen_at)} · event `{event_id}`",
                    }
                ],
            },
        ],
    }


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and its path, which holds a Slack token) replaced."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, "<redacted-url>")
        path = secret.split("://", 1)[-1].partition("/")[2]
        if len(path) >= 8:
            text = text.replace(path, "<redacted>")
    return text
