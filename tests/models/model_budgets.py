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
from tests.models.reference import (
    USD_AMOUNT,
    attributed_requests,
    key_rotations,
    merged_versions,
    money,
    row_states,
)

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
    carrier: tuple[str, str] | None = None  # (raw table, id) of the row holding the entry


@dataclass
class Window:
    start: datetime
    end: datetime | None
    spend: Decimal = Decimal(0)
    requests: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    # (crossing type, pct) -> (the limit crossed, when, window spend at the crossing)
    crossings: dict[tuple[str, int | None], tuple[Decimal, datetime, Decimal]] = field(
        default_factory=dict
    )


def _entries(text: str | None) -> Iterator[tuple[str | None, Any]]:
    """(model, entry) pairs of a model_max_budget JSON text; (None, None) if not an object."""
    if text is None or text.strip() in ("", "{}", "null"):
        return
    value = json.loads(text)
    if not isinstance(value, dict):
        yield None, None
        return
    yield from value.items()


def _budget(
    kind: str, entity: str, source: str, model: str | None, entry: Any, carrier: tuple[str, str]
) -> ModelBudget:
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
    return ModelBudget(kind, entity, source, model, duration, limit, error, carrier)


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
        mine = ("verification_tokens", token)
        out += [_budget("key", token, "key_model_max_budget", m, e, mine) for m, e in own.items()]
        team = teams.get(key["team_id"], {})
        for model, entry in _entries(team.get("model_max_budget")):
            if model is None or model not in own:
                source, carrier = "team_model_max_budget", ("teams", key["team_id"])
                out.append(_budget("key", token, source, model, entry, carrier))
    for user in data.rows("users"):
        if user["user_id"] == "litellm-proxy-budget":
            continue
        for model, entry in _entries(user.get("model_max_budget")):
            carrier = ("users", user["user_id"])
            source = "user_model_max_budget"
            out.append(_budget("user", user["user_id"], source, model, entry, carrier))
    for end_user in data.rows("end_users"):
        budget = budgets.get(end_user["budget_id"], {})
        for model, entry in _entries(budget.get("model_max_budget")):
            source, carrier = "end_user_budget_model_max_budget", ("budgets", budget["budget_id"])
            out.append(_budget("end_user", end_user["user_id"], source, model, entry, carrier))
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


def entry_limit(limits: dict | None, model: str | None) -> Decimal | None:
    """The limit of ``model``'s entry in one version of a row's limits (None: no such entry)."""
    text = (limits or {}).get("model_max_budget")
    value = json.loads(text) if isinstance(text, str) else text
    entry = value.get(model) if isinstance(value, dict) else None
    if not isinstance(entry, dict):
        return None
    limit = next(
        (entry[n] for n in ("budget_limit", "max_budget") if entry.get(n) is not None), None
    )
    text = None if limit is None else str(limit).strip()
    return Decimal(text) if text and USD_AMOUNT.fullmatch(text) else None


def limit_versions(data: RawDataset, budget: ModelBudget) -> tuple:
    """(valid_from, valid_to, limit) of a per-model budget: its entry in each state of the row
    holding it (reference.row_states); its current limit since ever without history."""
    states = row_states(data, budget.carrier) if budget.carrier else []
    if not states:
        return ((None, None, budget.limit),)
    return merged_versions([(start, (entry_limit(s, budget.model),)) for start, s in states])


def _roll(
    rows: list[dict[str, Any]], budget: ModelBudget, versions: tuple, threshold_pcts: list[int]
) -> list[Window]:
    """Each request is measured against the limit in force when it was made; a limit crossed
    under several versions keeps its first crossing."""
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
        max_ = next(
            m for vf, vt, m in versions if (vf is None or vf <= at) and (vt is None or at < vt)
        )
        if max_ is None:
            continue
        limits = [(("max_budget", None), max_)]
        limits += [(("threshold", p), max_ * Decimal(p) / 100) for p in threshold_pcts]
        for kind, limit in limits:
            if kind not in current.crossings and current.spend >= limit:
                current.crossings[kind] = (limit, at, current.spend)
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
            versions = limit_versions(data, budget)
            result[budget] = _roll(rows_of.get(budget, []), budget, versions, threshold_pcts)
    return result
