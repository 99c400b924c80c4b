"""Reference implementation of per-model budgets (model_max_budget), in plain Python.

Independent of the SQL: it reads the raw rows and applies the proxy's rules as
``budget-features.md`` states them. A key's entries override its team's entries model by model
(the spend is the key's); users have their own; end users reach theirs through their budget row.
A request counts against the entry named by its model_group (else its model), first as written,
then without its provider prefix. Windows roll: one opens at the first charged request (spend > 0)
and lasts the duration; the next opens at the first charged request at or after its end.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.models.budget_periods import InvalidDurationError, parse_duration
from tests.models.raw_data import RawDataset
from tests.models.reference import USD_AMOUNT, attributed_requests, key_rotations, money

_NAMED = {"hourly": "1h", "daily": "1d", "weekly": "7d", "monthly": "30d"}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class ModelBudget:
    entity_type: str
    entity_id: str
    budget_source: str
    model: str | None
    duration: str | None
    limit: Decimal | None
    error: str | None  # why it cannot be enforced (config or duration), None when valid


@dataclass
class Window:
    start: datetime
    end: datetime | None
    spend: Decimal = Decimal(0)
    requests: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    crossings: dict[Decimal, tuple[datetime, Decimal]] = field(default_factory=dict)


def _entries(text: str | None) -> Iterator[tuple[str | None, Any]]:
    """(model, entry) pairs of a model_max_budget JSON text; (None, None) if not an object."""
    if text is None or text.strip() in ("", "{}", "null"):
        return
    value = json.loads(text)
    if not isinstance(value, dict):
        yield None, None
        return
    yield from value.items()


def _budget(kind: str, entity: str, source: str, model: str | None, entry: Any) -> ModelBudget:
    def member(*names: str) -> Any:
        if not isinstance(entry, dict):
            return None
        return next((entry[n] for n in names if entry.get(n) is not None), None)

    limit_value, duration = (
        member("budget_limit", "max_budget"),
        member("time_period", "budget_duration"),
    )
    limit_text = None if limit_value is None else str(limit_value).strip()
    error = None
    if model is None:
        error = "not an object"
    elif limit_text is None:
        error = "no limit"
    elif not USD_AMOUNT.fullmatch(limit_text):
        error = "limit not a number"
    else:
        try:
            parse_duration(duration)
        except InvalidDurationError:
            error = "invalid duration"
    limit = Decimal(limit_text) if error is None else None
    return ModelBudget(kind, entity, source, model, duration, limit, error)


def model_budgets(data: RawDataset) -> list[ModelBudget]:
    """Every per-model budget entry of the dataset, valid or not."""
    keys = {k["token"]: k for k in data.rows("deleted_verification_tokens")}
    keys.update({k["token"]: k for k in data.rows("verification_tokens")})
    for old_hash in key_rotations(data):  # the same key as its successor: not a second budget
        keys.pop(old_hash, None)
    teams = {t["team_id"]: t for t in data.rows("deleted_teams")}
    teams.update({t["team_id"]: t for t in data.rows("teams")})
    budgets = {b["budget_id"]: b for b in data.rows("budgets")}
    out = []
    for token, key in keys.items():
        own = dict(_entries(key.get("model_max_budget")))
        out += [_budget("key", token, "key_model_max_budget", m, e) for m, e in own.items()]
        team = teams.get(key["team_id"], {})
        for model, entry in _entries(team.get("model_max_budget")):
            if model is None or model not in own:
                out.append(_budget("key", token, "team_model_max_budget", model, entry))
    for user in data.rows("users"):
        if user["user_id"] == "litellm-proxy-budget":
            continue
        for model, entry in _entries(user.get("model_max_budget")):
            out.append(_budget("user", user["user_id"], "user_model_max_budget", model, entry))
    for end_user in data.rows("end_users"):
        budget = budgets.get(end_user["budget_id"], {})
        for model, entry in _entries(budget.get("model_max_budget")):
            source = "end_user_budget_model_max_budget"
            out.append(_budget("end_user", end_user["user_id"], source, model, entry))
    return out


def _window_end(start: datetime, duration: str | None) -> datetime | None:
    text = (duration or "").strip()
    text = _NAMED.get(text, text)
    if parse_duration(text).kind == "open":
        return None
    if text.endswith("mo"):
        month = start.month  # 1mo: one calendar month later, the day clamped to the month's end
        year, month = (start.year + 1, 1) if month == 12 else (start.year, month + 1)
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day)
    return start + timedelta(seconds=int(text[:-1]) * _SECONDS[text[-1]])


def _matched(row: dict[str, Any], candidates: list[ModelBudget]) -> ModelBudget | None:
    """The entry a request counts against among an entity's valid entries (exact name first)."""
    requested = row["model_group"] or row["model"] or ""
    names = [requested] + ([requested.split("/", 1)[1]] if "/" in requested else [])
    for name in names:
        for budget in sorted(candidates, key=lambda b: b.budget_source):
            if budget.model == name:
                return budget
    return None


def _roll(rows: list[dict[str, Any]], budget: ModelBudget, limits: list[Decimal]) -> list[Window]:
    found: list[Window] = []
    for row in rows:
        spend, at = money(row["spend"]), row["start_time"]
        current = found[-1] if found else None
        if current is None or (current.end is not None and at >= current.end):
            if spend <= 0:
                continue  # a zero-spend request between windows opens none
            current = Window(at, _window_end(at, budget.duration))
            found.append(current)
        current.spend += spend
        current.requests += 1
        current.first_at = current.first_at or at
        current.last_at = at
        for limit in limits:
            if limit not in current.crossings and current.spend >= limit:
                current.crossings[limit] = (at, current.spend)
    return found


def model_budget_windows(
    data: RawDataset, threshold_pcts: list[int]
) -> dict[ModelBudget, list[Window]]:
    """The rolling windows with requests of every valid per-model budget, oldest first."""
    by_entity: dict[tuple[str, str], list[ModelBudget]] = {}
    for budget in model_budgets(data):
        if budget.error is None:
            by_entity.setdefault((budget.entity_type, budget.entity_id), []).append(budget)
    entities = {r.request_id: r.entities for r in attributed_requests(data)}
    rows_of: dict[ModelBudget, list[dict[str, Any]]] = {}
    for row in sorted(data.rows("spend_logs"), key=lambda r: (r["start_time"], r["request_id"])):
        for entity_type in ("key", "user", "end_user"):
            entity_id = entities[row["request_id"]].get(entity_type)
            budget = _matched(row, by_entity.get((entity_type, entity_id), []))
            if budget is not None:
                rows_of.setdefault(budget, []).append(row)
    result = {}
    for budgets in by_entity.values():
        for budget in budgets:
            limits = [budget.limit] + [budget.limit * Decimal(p) / 100 for p in threshold_pcts]
            result[budget] = _roll(rows_of.get(budget, []), budget, limits)
    return result
