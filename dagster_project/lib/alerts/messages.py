"""What people receive: the alert's paragraph (who, how much, which budget, which period, what to
do), the health message, and the JSON and Slack payloads. :func:`redact` keeps webhook URLs (they
are secrets) out of every log line and error. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from dagster_project.lib.alerts.records import Alert, HealthProblem, decimal_text
from dagster_project.lib.times import as_utc, iso

_ENTITY_LABELS = {
    "key": "Key",
    "team": "Team",
    "organization": "Organization",
    "user": "User",
    "end_user": "End user",
    "team_member": "Team member",
    "tag": "Tag",
    "project": "Project",
}


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
    "tag_budget": "the tag's budget",
    "project_budget": "the project's budget",
    "key_model_max_budget": "the key's model_max_budget",
    "team_model_max_budget": "the team's model_max_budget (for each of its keys)",
    "user_model_max_budget": "the user's model_max_budget",
    "end_user_budget_model_max_budget": "the model_max_budget of the end user's budget",
    "key_budget_limits": "the key's budget_limits",
    "team_budget_limits": "the team's budget_limits",
    "user_budget_limits": "the user's budget_limits",
}


def budget_label(
    budget_source: str | None,
    budget_id: str | None,
    budget_model: str | None = None,
    budget_window: str | None = None,
) -> str:
    """Where the limit comes from, e.g. ``the key's budget b-1``, ``the key's model_max_budget
    for gpt-4o`` or ``the team's budget_limits, window 1d``."""
    if not budget_source:
        return ""
    label = _BUDGET_SOURCES.get(budget_source, budget_source.replace("_", " "))
    if budget_id and label.endswith("budget"):
        label += f" {budget_id}"
    if budget_model is not None:
        label += f" for {budget_model}"
    if budget_window is not None:
        label += f", window {budget_window}"
    return label


def _model_advice(alert: Alert) -> str:
    """What to do about a per-model budget: it only blocks one model, in a rolling window."""
    who = alert.entity_type.replace("_", " ")
    end = alert.period_end
    window = (
        f"the window ends at {as_utc(end):%Y-%m-%d %H:%M} UTC and the next opens at the "
        f"{who}'s next charged {alert.budget_model} request"
        if end
        else "this per-model budget never resets"
    )
    if alert.is_late:
        return (
            f"The window has ended: nothing is blocked now, but review why {alert.budget_model} "
            "spend went over and whether the per-model limit fits."
        )
    if alert.alert_type == "projected":
        return (
            f"Nothing is blocked yet: reduce {alert.budget_model} usage or raise the per-model "
            f"limit in model_max_budget before the window ends ({window})."
        )
    if alert.alert_type == "max_budget":
        return (
            f"The proxy rejects further {alert.budget_model} requests of this {who} (other "
            "models still work) until the per-model limit in model_max_budget is raised "
            f"({window})."
        )
    return (
        f"At 100% the proxy starts rejecting {alert.budget_model} requests of this {who}: "
        f"review the usage or raise the per-model limit in model_max_budget ({window})."
    )


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
        if entity_type == "tag":
            return (
                "The proxy rejects every further request carrying this tag (whatever its key, "
                "team or user) until the tag's max budget is raised or the tag is removed from "
                f"the callers' requests and key/team metadata ({reset})."
            )
        if entity_type == "project":
            return (
                "The proxy rejects every further request made with this project's keys until "
                f"the project's max budget is raised or the keys are moved out of it ({reset})."
            )
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


def alert_message(alert: Alert) -> str:
    """One readable paragraph: who, how much, which budget, which period, and what to do."""
    who = entity_label(alert.entity_type, alert.entity_id, alert.entity_alias)
    when = f"{as_utc(alert.breached_at):%Y-%m-%d %H:%M} UTC"
    # a per-model budget is the max budget of one model
    max_name = "max budget" if alert.budget_model is None else f"{alert.budget_model} budget"
    if alert.alert_type == "max_budget":
        what = f"reached its {max_name} of {usd(alert.threshold_usd)} on {when}"
    elif alert.alert_type == "soft_budget":
        what = f"crossed its soft budget of {usd(alert.threshold_usd)} on {when}"
    elif alert.alert_type == "threshold":
        share, limit = pct(alert.threshold_pct), usd(alert.threshold_usd)
        what = f"used {share} of its {max_name} ({limit}) on {when}"
    else:
        kind = (
            max_name
            if alert.projected_budget in (None, "max_budget")
            else alert.projected_budget.replace("_", " ")
        )
        what = (
            f"is forecast to spend {usd(alert.projected_period_spend_usd)} by the end of the "
            "period, "
            f"above its {kind} of {usd(alert.threshold_usd)} (forecast as of {when})"
        )
    source = budget_label(
        alert.budget_source, alert.budget_id, alert.budget_model, alert.budget_window
    )
    source = f" (limit from {source})" if source else ""
    if alert.budget_model is not None:
        advice = _model_advice(alert)
    else:
        advice = _advice(alert.alert_type, alert.entity_type, alert.period_end, alert.is_late)
    text = (
        f"{who} {what}{source}: {usd(alert.period_spend_usd)} spent in the period "
        f"{period_label(alert.period_start, alert.period_end)}. {advice}"
    )
    if alert.limit_changed_at is not None:
        text += (
            f" The limit changed on {as_utc(alert.limit_changed_at):%Y-%m-%d %H:%M} UTC inside "
            "this period; each request counts against the limit in force when it was made."
        )
    if alert.is_late:
        text += " Detected late: first seen after the period had closed."
    return text


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
    body["budget_model"] = alert.budget_model
    body["budget_window"] = alert.budget_window
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
    if alert.budget_model is not None:
        fields.append(("Model", alert.budget_model))
    if alert.budget_window is not None:
        fields.append(("Window", alert.budget_window))
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
