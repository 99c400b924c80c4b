"""Independent Python computations of what the marts must contain, from the raw rows."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.models.budget_periods import (
    InvalidDurationError,
    parse_duration,
    period_bounds,
    to_local,
    to_utc,
)
from tests.models.raw_data import RawDataset

TEN_DECIMALS = Decimal("1e-10")


def money(value: float | None) -> Decimal | None:
    """float8 -> numeric(38,10) as macro to_money converts it: IEEE-scaled to integer units
    (1e-10 USD below $100,000, 1e-4 USD below $1e9, else whole dollars), rounded half up."""
    if value is None:
        return None
    for limit, decimals in ((1e5, 10), (1e9, 4), (math.inf, 0)):
        if abs(value) < limit:
            units = math.floor(value * float(10**decimals) + 0.5)
            return (Decimal(units).scaleb(-decimals)).quantize(TEN_DECIMALS)
    raise ValueError(f"not a finite amount: {value!r}")


def _blank(value: str | None) -> str | None:
    return value or None


@dataclass(frozen=True)
class Request:
    request_id: str
    started_at: datetime
    spend: Decimal
    entities: dict[str, str]  # entity_type -> entity_id
    tags: frozenset[str] = frozenset()  # distinct non-empty tags: each counts the full cost

    def counts_against(self, entity_type: str, entity_id: str) -> bool:
        if entity_type == "tag":
            return entity_id in self.tags
        return self.entities.get(entity_type) == entity_id


def request_tags(text: str | None) -> frozenset[str]:
    """The distinct non-empty string tags of a request_tags JSON text (nothing if not a list)."""
    try:
        tags = json.loads(text or "[]")
    except ValueError:
        return frozenset()
    if not isinstance(tags, list):
        return frozenset()
    return frozenset(t for t in tags if isinstance(t, str) and t)


def request_project(row: dict[str, Any], key: dict[str, Any]) -> str | None:
    """The project a request counts for: the one its metadata names (user_api_key_project_id,
    flattened into meta_project_id at extraction; parsed from the metadata of rows landed
    before), else its key's (the live key, else its deleted copy)."""
    flattened = row.get("meta_project_id")
    if flattened is not None:
        return flattened or key.get("project_id")
    try:
        metadata = json.loads(row.get("metadata") or "{}")
    except ValueError:
        metadata = {}
    named = metadata.get("user_api_key_project_id") if isinstance(metadata, dict) else None
    return named or key.get("project_id")


def key_rotations(data: RawDataset) -> dict[str, tuple[str, str]]:
    """Old key hash -> (the hash that replaced it, the evidence), from the raw rows: an AuditLog
    row of action rotated first, then a DeprecatedVerificationToken row, then a deleted copy that
    shares created_at, alias, user and team with exactly one live key."""
    live = {k["token"]: k for k in data.rows("verification_tokens")}
    found: dict[str, tuple[str, str]] = {}
    for row in data.rows("deleted_verification_tokens"):
        if row["token"] in live:
            continue
        same = [
            token
            for token, k in live.items()
            if k["created_at"] == row["created_at"] and row["created_at"] is not None
            and all((k[c] or "") == (row[c] or "") for c in ("key_alias", "user_id", "team_id"))
        ]  # fmt: skip
        if len(same) == 1:
            found[row["token"]] = (same[0], "deleted_row_match")
    for row in data.rows("deprecated_verification_tokens"):
        if row["active_token_id"]:
            found[row["token"]] = (row["active_token_id"], "deprecated_token")
    for row in data.rows("audit_log"):
        table = row["table_name"] or ""
        if row["action"] != "rotated" or not table.endswith("VerificationToken"):
            continue
        if table.endswith(("DeletedVerificationToken", "DeprecatedVerificationToken")):
            continue
        new = json.loads(row["updated_values"] or "{}").get("token")
        if new and new != row["object_id"]:
            found[row["object_id"]] = (new, "audit_log")
    return found


def key_identity(rotations: dict[str, tuple[str, str]], key_hash: str | None) -> str | None:
    """The hash at the end of ``key_hash``'s chain of rotations (itself when never rotated)."""
    seen = set()
    while key_hash in rotations and key_hash not in seen:
        seen.add(key_hash)
        key_hash = rotations[key_hash][0]
    return key_hash


def attributed_requests(data: RawDataset) -> list[Request]:
    """Each spend-log row with the entities it counts against (a rotated key's old hashes count
    as the key they became)."""
    rotations = key_rotations(data)
    keys = {k["token"]: k for k in data.rows("deleted_verification_tokens")}
    keys.update({k["token"]: k for k in data.rows("verification_tokens")})
    teams = {t["team_id"]: t for t in data.rows("deleted_teams")}
    teams.update({t["team_id"]: t for t in data.rows("teams")})
    out = []
    for row in data.rows("spend_logs"):
        key_hash = _blank(row["api_key"])
        key = keys.get(key_hash, {})
        team_id = _blank(row["team_id"])
        user_id = _blank(row["user_id"]) or key.get("user_id")
        org_id = (
            _blank(row["organization_id"])
            or _blank(row["meta_organization_id"])
            or key.get("organization_id")
            or teams.get(team_id, {}).get("organization_id")
        )
        entities = {
            "key": key_identity(rotations, key_hash),
            "team": team_id,
            "organization": org_id,
            "user": user_id,
            "end_user": _blank(row["end_user"]),
            "team_member": f"{team_id}/{user_id}" if team_id and user_id else None,
            "project": request_project(row, key),
        }
        out.append(
            Request(
                row["request_id"],
                row["start_time"],
                money(row["spend"]),
                {k: v for k, v in entities.items() if v},
                request_tags(row["request_tags"]),
            )
        )
    return out


LimitVersion = tuple[datetime | None, datetime | None, Decimal | None, Decimal | None]


@dataclass(frozen=True)
class Budget:
    entity_type: str
    entity_id: str
    budget_source: str
    duration: str | None
    soft: Decimal | None
    max: Decimal | None
    anchor: datetime | None
    window: str | None = None  # a budget_limits window: its duration (identity among windows)
    error: str | None = None  # why a budget_limits window cannot be enforced
    budget_id: str | None = None  # the budget row the limits come from, if any
    # (valid_from, valid_to, soft, max): the limits over time (None = since ever / still)
    versions: tuple[LimitVersion, ...] = ()

    @property
    def ident(self) -> tuple[str, str, str, str | None]:
        return (self.entity_type, self.entity_id, self.budget_source, self.window)


USD_AMOUNT = re.compile(r"[0-9]{1,15}(\.[0-9]{1,10})?")


def budget_limit_windows(row: dict[str, Any], entity_type: str, entity_id: str) -> list[Budget]:
    """The windows of a key's or team's budget_limits (multi-window budgets), valid or not."""
    text = row.get("budget_limits")
    if text is None or text.strip() in ("", "[]", "null"):
        return []
    value = json.loads(text)
    source = f"{entity_type}_budget_limits"
    if not isinstance(value, list):
        return [Budget(entity_type, entity_id, source, None, None, None, row["created_at"],
                       "#0", "not a list")]  # fmt: skip
    out, seen = [], set()
    for position, entry in enumerate(value, start=1):
        entry = entry if isinstance(entry, dict) else {}
        duration, limit = entry.get("budget_duration"), entry.get("max_budget")
        limit_text = None if limit is None else str(limit).strip()
        error = None
        if duration is None:
            error = "no duration"
        elif limit_text is None:
            error = "no max_budget"
        elif not USD_AMOUNT.fullmatch(limit_text):
            error = "max_budget not a number"
        elif duration in seen:
            error = "same duration twice"
        if duration is not None:
            seen.add(duration)
        window = duration if error is None else f"{duration or ''}#{position}"
        limit_value = Decimal(limit_text) if error is None else None
        out.append(Budget(entity_type, entity_id, source, duration, None, limit_value,
                          row["created_at"], window, error))  # fmt: skip
    return out


def resolved_budgets(data: RawDataset) -> list[Budget]:
    """Every (entity, limit source) budget per proxy-db.md §4.1 (no end-user default)."""
    budgets = {b["budget_id"]: b for b in data.rows("budgets")}

    def has_limit(b: dict[str, Any]) -> bool:
        return b.get("max_budget") is not None or b.get("soft_budget") is not None

    out: list[Budget] = []
    for k in data.rows("verification_tokens"):
        if k["max_budget"] is not None:
            out.append(
                Budget(
                    "key",
                    k["token"],
                    "key",
                    k["budget_duration"],
                    None,
                    money(k["max_budget"]),
                    k["created_at"],
                )
            )
        b = budgets.get(k["budget_id"])
        if b and has_limit(b):
            own = k["budget_duration"] is not None
            out.append(
                Budget(
                    "key",
                    k["token"],
                    "key_budget",
                    k["budget_duration"] if own else b["budget_duration"],
                    money(b["soft_budget"]),
                    money(b["max_budget"]),
                    k["created_at"] if own else b["created_at"],
                    budget_id=b["budget_id"],
                )
            )
    for k in data.rows("verification_tokens"):
        out += budget_limit_windows(k, "key", k["token"])
    for u in data.rows("users"):
        out += budget_limit_windows(u, "user", u["user_id"])
    for t in data.rows("teams"):
        out += budget_limit_windows(t, "team", t["team_id"])
        if has_limit(t):
            out.append(
                Budget(
                    "team",
                    t["team_id"],
                    "team",
                    t["budget_duration"],
                    money(t["soft_budget"]),
                    money(t["max_budget"]),
                    t["created_at"],
                )
            )
    # Reached through a budget row only. Tags and projects need a TagTable / ProjectTable row
    # whose budget_id finds a budget row; a request's full cost counts for every tag it carries
    # and for its key's project (Request.counts_against).
    linked = [
        ("organization", "organization_budget", "organizations", "organization_id"),
        ("end_user", "end_user_budget", "end_users", "user_id"),
        ("tag", "tag_budget", "tags", "tag_name"),
        ("project", "project_budget", "projects", "project_id"),
    ]
    for entity_type, source, table, id_column in linked:
        for row in data.rows(table):
            b = budgets.get(row.get("budget_id"))
            if b and has_limit(b):
                out.append(
                    Budget(
                        entity_type,
                        row[id_column],
                        source,
                        b["budget_duration"],
                        money(b["soft_budget"]),
                        money(b["max_budget"]),
                        b["created_at"],
                        budget_id=b["budget_id"],
                    )
                )
    for u in data.rows("users"):
        if u["max_budget"] is not None and u["user_id"] != "litellm-proxy-budget":
            out.append(
                Budget(
                    "user",
                    u["user_id"],
                    "user",
                    u["budget_duration"],
                    None,
                    money(u["max_budget"]),
                    u["created_at"],
                )
            )
    for m in data.rows("team_memberships"):
        b = budgets.get(m["budget_id"])
        if b and has_limit(b):
            out.append(
                Budget(
                    "team_member",
                    f"{m['team_id']}/{m['user_id']}",
                    "team_member_budget",
                    b["budget_duration"],
                    money(b["soft_budget"]),
                    money(b["max_budget"]),
                    b["created_at"],
                    budget_id=b["budget_id"],
                )
            )
    return [replace(b, versions=limit_versions(data, b)) for b in out]


_CARRIERS = {"key": "verification_tokens", "team": "teams", "user": "users"}
_AUDITED_TABLES = {
    "VerificationToken": "verification_tokens",
    "TeamTable": "teams",
    "UserTable": "users",
    "BudgetTable": "budgets",
}
_SINCE_EVER = datetime.min


def _audit_changes(data: RawDataset, carrier: tuple[str, str]) -> list[tuple[datetime, dict, dict]]:
    """(changed_at, row before, row after) of each audited update of the ``carrier`` row."""
    out = []
    for row in data.rows("audit_log"):
        name = row["table_name"] or ""
        table = next(
            (t for suffix, t in _AUDITED_TABLES.items()
             if name.endswith(suffix) and not name.endswith(("Deleted" + suffix,
                                                             "Deprecated" + suffix))),
            None,
        )  # fmt: skip
        if row["action"] != "updated" or table is None or not row["before_value"]:
            continue
        before = json.loads(row["before_value"])
        ident = before.get("token") or row["object_id"] if table == "verification_tokens" else (
            row["object_id"])  # fmt: skip
        if (table, ident) == carrier and row["updated_at"] is not None:
            after = {**before, **json.loads(row["updated_values"] or "{}")}
            out.append((row["updated_at"], before, after))
    return sorted(out, key=lambda c: c[0])


def _budget_limits(budget: Budget, limits: dict | None) -> tuple[Decimal | None, Decimal | None]:
    """(soft, max) of ``budget`` in a version of its row's limits (None: the row was deleted)."""
    if limits is None:
        return (None, None)
    if budget.window is None:
        return (money(limits.get("soft_budget")), money(limits.get("max_budget")))
    windows = limits.get("budget_limits")
    windows = json.loads(windows) if isinstance(windows, str) else windows
    entry = next((w for w in windows or [] if isinstance(w, dict)
                  and w.get("budget_duration") == budget.duration), None)  # fmt: skip
    text = None if entry is None or entry.get("max_budget") is None else str(entry["max_budget"])
    return (None, Decimal(text.strip()) if text and USD_AMOUNT.fullmatch(text.strip()) else None)


def row_states(data: RawDataset, carrier: tuple[str, str]) -> list[tuple[datetime | None, Any]]:
    """The limits of one budget-bearing row over time, [(start, limits dict or None)], oldest
    first: the warehouse's snapshots and the audit log's updates (the limits before each change
    since the change before it, the limits after it since the change); a snapshot wins over an
    audited state at the same instant. Empty when there is no history."""
    snapshots = [r for r in data.rows("budget_limit_history")
                 if (r["source_table"], r["entity_id"]) == carrier]  # fmt: skip
    audits = _audit_changes(data, carrier)
    points = [t for t, _, _ in audits] + [r["valid_from"] for r in snapshots if r["valid_from"]]
    first_seen = min((r["observed_at"] for r in snapshots), default=None)
    # start -> (rank, limits); rank 0 snapshot, 1 audited after-state, 2 audited before-state
    starts: dict[datetime, tuple[int, dict | None]] = {}

    def offer(start: datetime | None, rank: int, limits: dict | None) -> None:
        key = start or _SINCE_EVER
        if key not in starts or rank < starts[key][0]:
            starts[key] = (rank, limits)

    for r in snapshots:
        start = r["valid_from"] or max((t for t, _, _ in audits if t <= first_seen), default=None)
        offer(start, 0, json.loads(r["limits_json"]) if r["limits_json"] else None)
    for t, before, after in audits:
        offer(max((p for p in points if p < t), default=None), 2, before)
        offer(t, 1, after)
    return [(None if start == _SINCE_EVER else start, limits)
            for start, (_, limits) in sorted(starts.items())]  # fmt: skip


def merged_versions(states: list[tuple[datetime | None, tuple]]) -> tuple:
    """(valid_from, valid_to, *limits) of consecutive states, equal neighbours merged."""
    kept = [(start, limits) for i, (start, limits) in enumerate(states)
            if i == 0 or limits != states[i - 1][1]]  # fmt: skip
    return tuple(
        (start, nxt[0] if nxt else None, *limits)
        for (start, limits), nxt in zip(kept, [*kept[1:], None], strict=True)
    )


_LINKS = {
    "key_budget": "verification_tokens",
    "organization_budget": "organizations",
    "end_user_budget": "end_users",
    "team_member_budget": "team_memberships",
    "tag_budget": "tags",
    "project_budget": "projects",
}


def _linked_states(data: RawDataset, budget: Budget) -> list[tuple[datetime | None, tuple]]:
    """(start, (soft, max)) of a budget-row budget: at each instant the limits of the budget row
    its linking row (key, organization, end user, membership, tag, project) linked then."""
    links = row_states(data, (_LINKS[budget.budget_source], budget.entity_id))
    links = [(s, (v or {}).get("budget_id")) for s, v in links] or [(None, budget.budget_id)]
    current = {b["budget_id"]: b for b in data.rows("budgets")}
    out: list[tuple[datetime | None, tuple]] = []
    for (start, budget_id), following in zip(links, [*links[1:], None], strict=True):
        end = following[0] if following else None
        rows = row_states(data, ("budgets", budget_id)) if budget_id else []
        if not rows and budget_id in current:
            rows = [(None, current[budget_id])]
        pieces = [(s, lim, n[0] if n else None)
                  for (s, lim), n in zip(rows, [*rows[1:], None], strict=True)]  # fmt: skip
        inside = [p for p in pieces if (end is None or p[0] is None or p[0] < end)
                  and (p[2] is None or start is None or start < p[2])]  # fmt: skip
        if not inside:
            out.append((start, (None, None)))
        for s, limits, _ in inside:
            begin = s if start is None else start if s is None else max(s, start)
            out.append((begin, (money((limits or {}).get("soft_budget")),
                                money((limits or {}).get("max_budget")))))  # fmt: skip
    return out


def limit_versions(data: RawDataset, budget: Budget) -> tuple:
    """The limits (soft, max) of ``budget`` over time, from the history of the row carrying its
    amounts (its own row, a budget_limits window of it, or its budget row; see row_states). Its
    current limits since ever when there is no history."""
    if budget.budget_source in _CARRIERS:
        carrier = (_CARRIERS[budget.budget_source], budget.entity_id)
    elif budget.budget_source in ("key_budget_limits", "team_budget_limits", "user_budget_limits"):
        if budget.error:
            return ((None, None, budget.soft, budget.max),)
        carrier = (_CARRIERS[budget.entity_type], budget.entity_id)
    elif budget.budget_source.endswith("_budget") and budget.budget_id:
        return merged_versions(_linked_states(data, budget))
    else:
        return ((None, None, budget.soft, budget.max),)
    states = row_states(data, carrier)
    if not states:
        return ((None, None, budget.soft, budget.max),)
    return merged_versions([(start, _budget_limits(budget, limits)) for start, limits in states])


@dataclass
class Period:
    spend: Decimal
    requests: int
    soft_crossed_at: datetime | None
    max_crossed_at: datetime | None
    # (crossing type, pct) -> (the limit crossed, when, period spend at the crossing)
    crossings: dict[tuple[str, int | None], tuple[Decimal, datetime, Decimal]]


def _open_start(budget: Budget, requests: list[Request], tz: str) -> datetime:
    first = min(r.started_at for r in requests)
    candidates = [to_local(first, tz)]
    if budget.anchor is not None:
        candidates.append(to_local(budget.anchor, tz))
    start_local = min(candidates).replace(hour=0, minute=0, second=0, microsecond=0)
    return to_utc(start_local, tz)


def budget_periods(
    budget: Budget, requests: list[Request], tz: str, threshold_pcts: list[int]
) -> dict[datetime, Period]:
    """Periods with spend of one valid budget, keyed by UTC period start. Each request is
    measured against the limits in force when it was made (``budget.versions``); a limit crossed
    under several versions keeps its first crossing."""
    duration = parse_duration(budget.duration)
    mine = sorted(
        (r for r in requests if r.counts_against(budget.entity_type, budget.entity_id)),
        key=lambda r: (r.started_at, r.request_id),
    )
    if not mine:
        return {}
    grouped: dict[datetime, list[Request]] = defaultdict(list)
    for r in mine:
        if duration.kind == "open":
            start = _open_start(budget, mine, tz)
        else:
            start, _ = period_bounds(r.started_at, duration, tz, budget.anchor)
        grouped[start].append(r)
    versions = budget.versions or ((None, None, budget.soft, budget.max),)
    periods = {}
    for start, rows in grouped.items():
        total = Decimal(0)
        crossed: dict[tuple[str, int | None], tuple[Decimal, datetime, Decimal]] = {}
        for r in rows:
            total += r.spend
            soft, max_ = next(
                (s, m) for vf, vt, s, m in versions
                if (vf is None or vf <= r.started_at) and (vt is None or r.started_at < vt)
            )  # fmt: skip
            limits = [("soft_budget", None, soft), ("max_budget", None, max_)]
            if max_ is not None:
                limits += [("threshold", p, max_ * Decimal(p) / 100) for p in threshold_pcts]
            for kind, pct, limit in limits:
                if limit is not None and (kind, pct) not in crossed and total >= limit:
                    crossed[(kind, pct)] = (limit, r.started_at, total)
        periods[start] = Period(
            spend=total,
            requests=len(rows),
            soft_crossed_at=crossed.get(("soft_budget", None), (None, None))[1],
            max_crossed_at=crossed.get(("max_budget", None), (None, None))[1],
            crossings=crossed,
        )
    return periods


def is_enforced(budget: Budget) -> bool:
    """A budget the marts evaluate: a valid duration and, for windows, a valid entry."""
    return budget.error is None and is_valid_duration(budget.duration)


def is_valid_duration(text: str | None) -> bool:
    try:
        parse_duration(text)
    except InvalidDurationError:
        return False
    return True
