"""What an alert is made of: the records read from the marts, the alert itself, and its identity.

One type per concept from the marts to the payload: :class:`BudgetCrossing` and
:class:`BudgetPeriod` are read from the marts (typed once, at the boundary), :class:`Alert` is
decided from them, stored in the ledger and sent. :func:`alert_id` hashes what makes a breach
*the same breach* (entity, budget, period, alert type, threshold) and nothing that changes when
data is re-processed, so re-runs, backfills and full rebuilds find the same id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from dagster_project.lib.times import as_utc, iso

ENTITY_TYPES = (
    "key",
    "team",
    "organization",
    "user",
    "end_user",
    "team_member",
    "tag",
    "project",
)
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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class BudgetSubject:
    """Whose budget: the entity and the budget its limit comes from (``budget_model``: the model
    a per-model budget limits; ``budget_window``: the window of a multi-window budget; both None
    for the other budgets)."""

    entity_type: str
    entity_id: str
    entity_alias: str | None
    budget_source: str | None
    budget_id: str | None
    budget_model: str | None = None
    budget_window: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BudgetSubject:
        return cls(
            entity_type=row["entity_type"],
            entity_id=str(row["entity_id"]),
            entity_alias=row.get("entity_alias"),
            budget_source=row.get("budget_source"),
            budget_id=_text(row.get("budget_id")),
            budget_model=_text(row.get("budget_model")),
            budget_window=_text(row.get("budget_window")),
        )


@dataclass(frozen=True)
class BudgetCrossing:
    """One row of ``fct_budget_threshold_crossings`` with the budget of its period."""

    crossing_id: str
    subject: BudgetSubject
    crossing_type: str  # soft_budget, max_budget or threshold
    threshold_pct: Decimal | None
    threshold_usd: Decimal | None
    period_start: datetime | None
    period_end: datetime | None
    crossed_at: datetime
    period_spend_at_crossing_usd: Decimal
    limit_changed_at: datetime | None = None  # the budget's limits changed inside the period

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BudgetCrossing:
        """Typed once, at the boundary: exact decimals, aware UTC timestamps."""
        return cls(
            crossing_id=str(row.get("crossing_id")),
            subject=BudgetSubject.from_row(row),
            crossing_type=row["crossing_type"],
            threshold_pct=to_decimal(row.get("threshold_pct")),
            threshold_usd=to_decimal(row.get("threshold_usd")),
            period_start=as_utc(row.get("period_start")),
            period_end=as_utc(row.get("period_end")),
            crossed_at=as_utc(row["crossed_at"]),
            period_spend_at_crossing_usd=to_decimal(row["period_spend_at_crossing_usd"]),
            limit_changed_at=as_utc(row.get("limit_changed_at")),
        )


@dataclass(frozen=True)
class BudgetPeriod:
    """What the projected rule reads of one row of ``fct_budget_periods``."""

    subject: BudgetSubject
    period_start: datetime | None
    period_end: datetime | None
    is_current_period: bool
    period_spend_usd: Decimal
    max_budget_usd: Decimal | None
    soft_budget_usd: Decimal | None
    max_budget_crossed_at: datetime | None
    soft_budget_crossed_at: datetime | None
    projected_period_spend_usd: Decimal | None
    projection_basis_days: float | None
    last_request_at: datetime | None
    evaluated_at: datetime | None  # dbt's evaluation instant (its build time or budget_as_of)

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The mart columns :meth:`from_row` reads (the subject's, then the period's)."""
        period = (f.name for f in fields(cls) if f.name != "subject")
        return (*(f.name for f in fields(BudgetSubject)), *period)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BudgetPeriod:
        """Typed once, at the boundary: exact decimals, aware UTC timestamps."""
        basis = row.get("projection_basis_days")
        return cls(
            subject=BudgetSubject.from_row(row),
            period_start=as_utc(row.get("period_start")),
            period_end=as_utc(row.get("period_end")),
            is_current_period=bool(row.get("is_current_period")),
            period_spend_usd=to_decimal(row.get("period_spend_usd")) or Decimal(0),
            max_budget_usd=to_decimal(row.get("max_budget_usd")),
            soft_budget_usd=to_decimal(row.get("soft_budget_usd")),
            max_budget_crossed_at=as_utc(row.get("max_budget_crossed_at")),
            soft_budget_crossed_at=as_utc(row.get("soft_budget_crossed_at")),
            projected_period_spend_usd=to_decimal(row.get("projected_period_spend_usd")),
            projection_basis_days=None if basis is None else float(basis),
            last_request_at=as_utc(row.get("last_request_at")),
            evaluated_at=as_utc(row.get("evaluated_at")),
        )


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
    projected_budget: str | None = None  # max_budget or soft_budget: what a forecast exceeds
    budget_model: str | None = None  # the model of a per-model budget (model_max_budget)
    budget_window: str | None = None  # the window of a multi-window budget (budget_limits)
    limit_changed_at: datetime | None = None  # when the limits changed inside the period

    def contract_row(self) -> dict[str, Any]:
        """The contract columns only, in contract order."""
        row = asdict(self)
        return {name: row[name] for name in CONTRACT_COLUMNS}


@dataclass(frozen=True)
class HealthProblem:
    """Why alerts cannot be trusted right now (a failed check, stale or missing data)."""

    key: str  # stable identity of the problem, e.g. "check:raw/spend_logs:freshness"
    message: str


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
    budget_model: str | None = None,
    budget_window: str | None = None,
) -> str:
    """Stable identity of one breach: same inputs, same id, in every process and every run.

    A budget without duration has one open-ended period (``period_end`` is None); its start
    is left out, because a late request older than the first one known can move it.
    ``threshold`` distinguishes alerts of one type within a period: the percentage for
    ``threshold`` alerts, the budget kind (``max_budget``/``soft_budget``) for ``projected``
    alerts, and nothing for ``soft_budget``/``max_budget`` (one per period). Amounts are
    deliberately left out: editing a budget mid-period does not re-open an alert that fired.
    ``budget_model`` (per-model budgets) and ``budget_window`` (multi-window budgets) are appended
    only when set, so the ids of every other budget are unchanged.
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
        *(() if budget_model is None else ("model", budget_model)),
        *(() if budget_window is None else ("window", budget_window)),
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
