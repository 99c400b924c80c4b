"""Budget windows, the spend ledger, and sizing of budgets and counters from simulated spend.

Pure. Windows follow upstream's calendar alignment in UTC: ``1h`` = clock hours, ``1d`` = UTC
days, ``7d`` = weeks starting Monday, ``30d`` and ``1mo`` = calendar months; ``None`` = one
window that never resets. All windows are whole clock hours, so hourly spend per key, per end
user and per budgeted tag (the :class:`SpendLedger`) is enough to compute any entity's spend in
any window.

Sizing per profile (``peak`` = the highest spend of any window in the simulated range,
``ref`` = the current window's spend when it is at least a quarter of ``peak``, else ``peak``):

- ``under``: soft 1.6 x peak, max 2.5 x peak: never crossed;
- ``soft``: soft 0.7 x ref, max 1.4 x peak: the soft budget is crossed, the max never;
- ``over``: soft 0.5 x ref, max 0.85 x ref: both are crossed;
- ``none``: no limits.

Per-model budgets (``model_max_budget``, rolling windows upstream) are sized from the same
ledger: a key's daily peak times the share of its requests on its favourite model, times 0.3
for ``over`` keys (crossed) and 3 for the others (not crossed); one team, one user and one
end-user tier get one too, with both spellings of an entry in use.

Capped keys (:class:`~.population.CappedKey`) are the exception: their ``max_budget`` is fixed
before any traffic (:func:`size_caps`, half the highest expected spend of one of their periods),
enforced while the requests are generated, and kept by :func:`finalize`; their counters never
drift (the proxy enforces on them).

Limit changes (:class:`~.population.LimitChange`, :func:`finalize`): one key, one team and one
tag or project budget row get their limits edited inside their current period; the limits
sized here are the new ones, the old ones are chosen so that the change matters: lowered below
the period's spend when the new ``max_budget`` is crossed (the old one was never crossed), else
raised above it (the old one was crossed before the change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from dagster_project.simulator.catalog import ADMIN_USER_ID, EXTRA_TAGS, MODELS
from dagster_project.simulator.population import (
    EndUser,
    Key,
    LimitChange,
    Organization,
    Population,
    Project,
    Rotation,
    Tag,
    Team,
    TeamMember,
    User,
    seeded_uuid,
)

HOUR_MS = 3_600_000
NO_KEY = -2
MASTER_KEY_INDEX = -1
DRIFT_SHARE = 0.1
MODEL_BUDGET_KEY_SHARE = 0.3
BUDGET_LIMITS_KEY_SHARE = 0.2
_WINDOW_DAYS = {"1d": 1, "7d": 7}
CAP_SHARE = 0.5
"""A capped key's ``max_budget``: this share of the highest expected spend of its periods."""
CHANGED_DURATIONS: tuple[str, ...] = ("1d", "7d", "30d", "1mo")
"""Durations of the rows whose limits may change mid-period (periods of several hours)."""


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch of a naive UTC datetime."""
    return int(np.datetime64(ts, "ms").astype(np.int64))


def period_labels(hours: np.ndarray, duration: str | None) -> np.ndarray:
    """Window label of each clock hour (hours since the epoch) for ``duration``."""
    hours = np.asarray(hours, dtype=np.int64)
    if duration is None:
        return np.zeros_like(hours)
    if duration == "1h":
        return hours
    if duration == "1d":
        return hours // 24
    if duration == "7d":
        return (hours // 24 + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday
    if duration in ("30d", "1mo"):
        return hours.astype("datetime64[h]").astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"budget_duration {duration!r} is not one the simulator generates")


def next_reset(at: datetime, duration: str | None) -> datetime | None:
    """Upstream's ``budget_reset_at`` for a window containing ``at`` (``None``: never)."""
    if duration is None:
        return None
    if duration == "1h":
        return at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if duration == "1d":
        return midnight + timedelta(days=1)
    if duration == "7d":
        return midnight + timedelta(days=7 - midnight.weekday())
    if duration in ("30d", "1mo"):
        first = midnight.replace(day=1)
        return (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else (first.replace(month=first.month + 1))
        )
    raise ValueError(f"budget_duration {duration!r} is not one the simulator generates")


@dataclass
class SpendLedger:
    """Hourly spend per key (plus one row for master-key calls), per end user and per tag of
    ``Population.tags`` (every request carrying a tag books its full cost on it).

    Keys are booked by index, not by hash: a rotated key's row holds its spend under every hash
    it had (``Population.key_hashes``), as the proxy keeps the live row's ``spend`` across a
    regeneration (the row is updated in place; only the copy in ``DeletedVerificationToken``
    freezes the counter at the rotation). So live key counters and budgets follow the key, not
    the hash in ``SpendLogs.api_key``."""

    first_hour: int
    key_hourly: np.ndarray
    end_user_hourly: np.ndarray
    tag_hourly: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @classmethod
    def empty(
        cls, start: datetime, end: datetime, n_keys: int, n_end_users: int, n_tags: int = 0
    ) -> SpendLedger:
        """A zero ledger for traffic in ``[start, end)``."""
        first = epoch_ms(start) // HOUR_MS
        last = (epoch_ms(end) - 1) // HOUR_MS
        hours = max(int(last - first + 1), 1)
        return cls(
            first_hour=int(first),
            key_hourly=np.zeros((n_keys + 1, hours)),
            end_user_hourly=np.zeros((n_end_users, hours)),
            tag_hourly=np.zeros((n_tags, hours)),
        )

    def add_tags(self, carried: np.ndarray, start_ms: np.ndarray, spend: np.ndarray) -> None:
        """Book written rows on the tags they carry (``carried``: rows x tags, boolean)."""
        hour = start_ms // HOUR_MS - self.first_hour
        inside = (hour >= 0) & (hour < self.key_hourly.shape[1]) & (spend != 0)
        for j in range(min(carried.shape[1], self.tag_hourly.shape[0])):
            ok = inside & carried[:, j]
            np.add.at(self.tag_hourly[j], hour[ok], spend[ok])

    @property
    def hours(self) -> np.ndarray:
        """Clock hours (since the epoch) the ledger covers."""
        return self.first_hour + np.arange(self.key_hourly.shape[1], dtype=np.int64)

    def add(
        self, key_idx: np.ndarray, end_user_idx: np.ndarray, start_ms: np.ndarray, spend: np.ndarray
    ) -> None:
        """Book written rows: key index (-1 master key, -2 none), end user index (-1 none)."""
        hour = start_ms // HOUR_MS - self.first_hour
        inside = (hour >= 0) & (hour < self.key_hourly.shape[1]) & (spend != 0)
        n_keys = self.key_hourly.shape[0] - 1
        rows = np.where(key_idx == MASTER_KEY_INDEX, n_keys, key_idx)
        ok = inside & (key_idx != NO_KEY)
        np.add.at(self.key_hourly, (rows[ok], hour[ok]), spend[ok])
        ok = inside & (end_user_idx >= 0)
        np.add.at(self.end_user_hourly, (end_user_idx[ok], hour[ok]), spend[ok])


def tags_carried(
    pop: Population, key_idx: np.ndarray, tag_variant: np.ndarray, extra_tag: np.ndarray
) -> np.ndarray:
    """Which of ``pop.tags`` each request carries (rows x tags, boolean), as the rendered
    ``request_tags`` put them: variant 0 none, 1 the key's default tags, 2 those plus the extra
    tag ``EXTRA_TAGS[extra_tag % len(EXTRA_TAGS)]`` (master-key and keyless calls: no defaults)."""
    names = [t.tag_name for t in pop.tags]
    n_keys = len(pop.keys)
    defaults = np.zeros((n_keys + 2, len(names)), dtype=bool)  # + no key (-2), master key (-1)
    for i, key in enumerate(pop.keys):
        defaults[i] = [name in key.default_tags for name in names]
    extras = np.array([[e == name for name in names] for e in EXTRA_TAGS], dtype=bool)
    extras = extras.reshape(len(EXTRA_TAGS), len(names))
    rows = np.where(key_idx < 0, n_keys + 2 + key_idx, key_idx)
    carried = (tag_variant != 0)[:, None] & defaults[rows]
    carried |= (tag_variant == 2)[:, None] & extras[extra_tag % len(EXTRA_TAGS)]
    return carried


@dataclass(frozen=True)
class WindowSpend:
    """Spend of one entity: its current window, its highest window, and all time."""

    current: float
    peak: float
    total: float


def window_spend(
    series: np.ndarray, hours: np.ndarray, duration: str | None, at_hour: int
) -> WindowSpend:
    """Spend of an hourly ``series`` in the window containing ``at_hour``, the peak, the total."""
    labels = period_labels(hours, duration)
    now_label = int(period_labels(np.array([at_hour]), duration)[0])
    uniq, inverse = np.unique(labels, return_inverse=True)
    sums = np.bincount(inverse, weights=series, minlength=len(uniq))
    current = float(series[(labels == now_label) & (hours <= at_hour)].sum())
    return WindowSpend(
        current=current, peak=float(sums.max(initial=0.0)), total=float(series.sum())
    )


def _money(value: float, *, up: bool) -> float:
    """Round a budget amount to cents (micro-dollars below 5 cents), in the safe direction."""
    scale = 100 if value >= 0.05 else 1_000_000
    rounded = (math.ceil if up else math.floor)(value * scale) / scale
    return rounded if rounded > 0 or up else value


def size_limits(profile: str, spend: WindowSpend) -> tuple[float | None, float | None]:
    """``(soft_budget, max_budget)`` for ``profile`` given an entity's window spend."""
    if profile == "none":
        return None, None
    peak = spend.peak
    if peak <= 0:
        return 5.0, 10.0
    ref = spend.current if spend.current >= 0.25 * peak else peak
    if profile == "under":
        return _money(1.6 * peak, up=True), _money(2.5 * peak, up=True)
    if profile == "soft":
        return _money(0.7 * ref, up=False), _money(1.4 * peak, up=True)
    if profile == "over":
        return _money(0.5 * ref, up=False), _money(0.85 * ref, up=False)
    raise ValueError(f"unknown budget profile {profile!r}")


def size_caps(pop: Population, hours: np.ndarray, expected: np.ndarray) -> Population:
    """Fix the capped keys' ``max_budget`` before traffic: :data:`CAP_SHARE` of the highest
    expected spend of one of the key's budget periods, from ``expected`` (keys x chunks, as
    :func:`~.workload.expected_key_spend`) over chunks starting in clock ``hours``; busier
    periods reach it, quiet ones (weekends of a ``1d`` key) may not."""
    capped = []
    keys = list(pop.keys)
    for c in pop.capped_keys:
        labels = period_labels(hours, c.budget_duration)
        _, inverse = np.unique(labels, return_inverse=True)
        peak = float(np.bincount(inverse, weights=expected[c.key_index]).max(initial=0.0))
        cap = _money(CAP_SHARE * peak, up=False) if peak > 0 else 1.0
        capped.append(replace(c, max_budget=cap))
        keys[c.key_index] = replace(keys[c.key_index], max_budget=cap)
    return replace(pop, keys=tuple(keys), capped_keys=tuple(capped))


class _Sizing:
    """Working state of :func:`finalize`: the ledger, the budget rows, the drift draws."""

    def __init__(self, pop: Population, ledger: SpendLedger) -> None:
        self.pop, self.ledger = pop, ledger
        self.hours = ledger.hours
        self.end_hour = epoch_ms(pop.end) // HOUR_MS
        self.rng = np.random.default_rng([pop.seed, 3])
        self.drifted: set[tuple[str, str]] = set()
        self.budgets = {b.budget_id: b for b in pop.budgets}

    def keys_series(self, pred: Callable[[Key], bool], *, master: bool = False) -> np.ndarray:
        """Hourly spend of the keys matching ``pred`` (plus master-key calls if ``master``)."""
        rows = [i for i, k in enumerate(self.pop.keys) if pred(k)]
        if master:
            rows.append(len(self.pop.keys))
        if not rows:
            return np.zeros(len(self.hours))
        return self.ledger.key_hourly[rows].sum(axis=0)

    def spend(
        self, series: np.ndarray, duration: str | None, at_hour: int | None = None
    ) -> WindowSpend:
        """Window spend of ``series`` at ``at_hour`` (default: the end of the range)."""
        at = self.end_hour if at_hour is None else at_hour
        return window_spend(series, self.hours, duration, at)

    def counter(self, kind: str, ident: str, truth: float) -> float:
        """The live counter for ``truth``: equal, or for a few entities drifted below it."""
        if truth > 0 and self.rng.random() < DRIFT_SHARE:
            self.drifted.add((kind, ident))
            return round(truth * float(self.rng.uniform(0.85, 0.98)), 9)
        return truth

    def set_budget(self, budget_id: str | None, soft: float | None, max_: float | None) -> None:
        """Fill in a budget row's amounts and next reset."""
        if budget_id is not None:
            row = self.budgets[budget_id]
            self.budgets[budget_id] = replace(
                row,
                soft_budget=soft,
                max_budget=max_,
                budget_reset_at=next_reset(self.pop.end, row.budget_duration),
            )

    def duration_of(self, budget_id: str | None) -> str | None:
        """``budget_duration`` of a budget row (``None`` without a row)."""
        return self.budgets[budget_id].budget_duration if budget_id else None


def _current(ws: WindowSpend, duration: str | None) -> float:
    """Counter value: the current window's spend, or all-time spend without a window."""
    return ws.current if duration else ws.total


def _size_keys(z: _Sizing) -> tuple[Key, ...]:
    keys = []
    for i, key in enumerate(z.pop.keys):
        at = key.deleted_at or z.pop.end  # deleted keys: their counter as of deletion
        at_hour = (epoch_ms(at) - (1 if key.deleted_at else 0)) // HOUR_MS
        ws = z.spend(z.ledger.key_hourly[i], key.budget_duration, at_hour)
        soft, max_ = size_limits(key.profile, ws)
        truth = _current(ws, key.budget_duration)
        spend = z.counter("key", key.token, truth)
        capped = z.pop.capped(i)
        if capped is not None and capped.max_budget is not None:
            # fixed before the traffic and enforced on it: kept, with an exact counter (the
            # proxy's, which refused the requests) and a soft budget below it
            max_ = capped.max_budget
            if soft is not None and soft >= max_:
                soft = _money(0.5 * max_, up=False)
            z.drifted.discard(("key", key.token))
            spend = truth
        z.set_budget(key.budget_id, soft, None)  # a key's soft budget lives on its budget row
        keys.append(
            replace(
                key,
                max_budget=max_,
                soft_budget=soft if key.budget_id else None,
                budget_reset_at=next_reset(at, key.budget_duration),
                period_spend=truth,
                spend=spend,
            )
        )
    return tuple(keys)


def _size_rotations(z: _Sizing) -> tuple[Rotation, ...]:
    """The old row's counter and reset as copied at each rotation: the spend of the key's window
    containing the rotation, over the whole hours before it (the ledger is hourly)."""
    rotations = []
    for r in z.pop.rotations:
        key = z.pop.keys[r.key_index]
        at_hour = epoch_ms(r.rotated_at) // HOUR_MS
        series = np.where(z.hours < at_hour, z.ledger.key_hourly[r.key_index], 0.0)
        ws = z.spend(series, key.budget_duration, at_hour)
        rotations.append(
            replace(
                r,
                spend=_current(ws, key.budget_duration),
                budget_reset_at=next_reset(r.rotated_at, key.budget_duration),
            )
        )
    return tuple(rotations)


def _size_users(z: _Sizing) -> tuple[User, ...]:
    users = []
    for user in z.pop.users:
        series = z.keys_series(
            lambda k, u=user.user_id: k.user_id == u, master=user.user_id == ADMIN_USER_ID
        )
        ws = z.spend(series, user.budget_duration)
        _, max_ = size_limits(user.profile, ws)
        truth = _current(ws, user.budget_duration)
        users.append(
            replace(
                user,
                max_budget=max_,
                budget_reset_at=next_reset(z.pop.end, user.budget_duration),
                period_spend=truth,
                spend=z.counter("user", user.user_id, truth),
            )
        )
    return tuple(users)


def _size_teams(z: _Sizing) -> tuple[Team, ...]:
    teams = []
    for team in z.pop.teams:
        ws = z.spend(z.keys_series(lambda k, t=team.team_id: k.team_id == t), team.budget_duration)
        soft, max_ = size_limits(team.profile, ws)
        truth = _current(ws, team.budget_duration)
        teams.append(
            replace(
                team,
                max_budget=max_,
                soft_budget=soft,
                budget_reset_at=next_reset(z.pop.end, team.budget_duration),
                period_spend=truth,
                spend=z.counter("team", team.team_id, truth),
            )
        )
    return tuple(teams)


def _size_organizations(z: _Sizing) -> tuple[Organization, ...]:
    orgs = []
    for org in z.pop.organizations:
        series = z.keys_series(lambda k, o=org.organization_id: k.organization_id == o)
        ws = z.spend(series, z.duration_of(org.budget_id))
        z.set_budget(org.budget_id, *size_limits(org.profile, ws))
        orgs.append(  # organization counters are never reset upstream
            replace(
                org,
                period_spend=ws.total,
                spend=z.counter("organization", org.organization_id, ws.total),
            )
        )
    return tuple(orgs)


def _size_team_members(z: _Sizing) -> tuple[TeamMember, ...]:
    """Member counters reset only through the member's budget row (proxy-db.md §4.3 step 4,
    §4.5): without one, the counter is all-time spend whatever the team's duration."""
    members = []
    for m in z.pop.team_members:
        series = z.keys_series(lambda k, m=m: k.team_id == m.team_id and k.user_id == m.user_id)
        duration = z.duration_of(m.budget_id)
        ws = z.spend(series, duration)
        z.set_budget(m.budget_id, None, size_limits(m.profile, ws)[1])
        truth = _current(ws, duration)
        members.append(
            replace(
                m,
                period_spend=truth,
                spend=z.counter("team_member", f"{m.team_id}::{m.user_id}", truth),
                total_spend=ws.total,
            )
        )
    return tuple(members)


def _size_end_users(z: _Sizing) -> tuple[EndUser, ...]:
    """End users share tier budgets: each tier's max is the median of its members' peaks, so
    about half of them cross it."""
    end_users = []
    tier_peaks: dict[str, list[float]] = {}
    for i, eu in enumerate(z.pop.end_users):
        duration = z.duration_of(eu.budget_id)
        ws = z.spend(z.ledger.end_user_hourly[i], duration)
        if eu.budget_id:
            tier_peaks.setdefault(eu.budget_id, []).append(ws.peak)
        truth = _current(ws, duration)
        end_users.append(
            replace(eu, period_spend=truth, spend=z.counter("end_user", eu.user_id, truth))
        )
    for budget_id, peaks in tier_peaks.items():
        median = float(np.median(peaks))
        max_ = _money(median, up=True) if median > 0 else 1.0
        z.set_budget(budget_id, _money(0.6 * max_, up=False), max_)
    return tuple(end_users)


def _size_tags(z: _Sizing) -> tuple[Tag, ...]:
    """Tags with a budget row: sized by profile from the full cost of the requests carrying
    them; the counter resets with the budget row (all-time spend without one)."""
    tags = []
    for j, tag in enumerate(z.pop.tags):
        series = (
            z.ledger.tag_hourly[j] if j < z.ledger.tag_hourly.shape[0] else np.zeros(len(z.hours))
        )
        duration = z.duration_of(tag.budget_id)
        ws = z.spend(series, duration)
        z.set_budget(tag.budget_id, *size_limits(tag.profile, ws))
        truth = _current(ws, duration)
        tags.append(replace(tag, period_spend=truth, spend=z.counter("tag", tag.tag_name, truth)))
    return tuple(tags)


def _size_projects(z: _Sizing) -> tuple[Project, ...]:
    """Projects with a budget row: sized by profile from the spend of their keys (live and
    deleted); the counter resets with the budget row (all-time spend without one)."""
    projects = []
    for project in z.pop.projects:
        series = z.keys_series(lambda k, p=project.project_id: k.project_id == p)
        duration = z.duration_of(project.budget_id)
        ws = z.spend(series, duration)
        z.set_budget(project.budget_id, *size_limits(project.profile, ws))
        truth = _current(ws, duration)
        projects.append(
            replace(
                project,
                period_spend=truth,
                spend=z.counter("project", project.project_id, truth),
            )
        )
    return tuple(projects)


def _model_entry(limit: float, duration: str, *, upstream_names: bool) -> dict:
    """One ``model_max_budget`` entry, in either accepted spelling."""
    if upstream_names:
        return {"budget_limit": limit, "time_period": duration}
    return {"max_budget": limit, "budget_duration": duration}


def _size_model_budgets(z: _Sizing, sized: dict[str, tuple]) -> dict[str, tuple]:
    """Per-model budgets on some keys (their favourite model, ``1d``), on the first budgeted
    team and user (the busiest model, ``7d`` and ``12h``) and on one end-user tier (``1mo``). Draws
    from their own stream, so the other sizes and counters stay as they were."""
    rng = np.random.default_rng([z.pop.seed, 4])
    busiest = MODELS[int(np.argmax([m.weight for m in MODELS]))].model_group
    keys = list(sized["keys"])
    capped = {c.key_index for c in z.pop.capped_keys}  # only their max_budget is enforced
    for i, key in enumerate(keys):
        if key.profile == "none" or rng.random() >= MODEL_BUDGET_KEY_SHARE or i in capped:
            continue
        top = int(np.argmax(key.model_weights))
        peak = z.spend(z.ledger.key_hourly[i], "1d").peak * key.model_weights[top]
        limit = _money(max(peak * (0.3 if key.profile == "over" else 3.0), 0.01), up=True)
        entry = _model_entry(limit, "1d", upstream_names=bool(i % 2))
        keys[i] = replace(key, model_max_budget={MODELS[top].model_group: entry})
    teams, users = list(sized["teams"]), list(sized["users"])
    for holders, duration, of in ((teams, "7d", "team_id"), (users, "12h", "user_id")):
        for j, holder in enumerate(holders):
            if holder.profile == "none":
                continue
            series = z.keys_series(lambda k, h=holder, a=of: getattr(k, a) == getattr(h, a))
            limit = _money(max(0.2 * z.spend(series, "7d").peak, 0.01), up=True)
            entry = _model_entry(limit, duration, upstream_names=of == "user_id")
            holders[j] = replace(holder, model_max_budget={busiest: entry})
            break
    tier = next((b for b in z.budgets.values() if b.owner == "end_user_tier"), None)
    if tier is not None:
        limit = _money(max(0.1 * (tier.max_budget or 1.0), 0.01), up=True)
        entry = _model_entry(limit, "1mo", upstream_names=True)
        z.budgets[tier.budget_id] = replace(tier, model_max_budget={busiest: entry})
    return {**sized, "keys": tuple(keys), "teams": tuple(teams), "users": tuple(users)}


def _size_budget_limits(
    z: _Sizing, sized: dict[str, tuple]
) -> tuple[dict[str, tuple], tuple[tuple[str, str, str, datetime, float], ...]]:
    """Multi-window budgets (``budget_limits``: a ``1d`` and a ``7d`` window) on some keys and
    the first budgeted team, sized like the other limits from each window's spend, and the
    proxy's ``BudgetWindowSpend`` row of each window: the current window's spend, a few (and the
    team's weekly window) drifted below it. Draws from their own stream, so nothing else changes."""
    rng = np.random.default_rng([z.pop.seed, 5])
    windows: list[tuple[str, str, str, datetime, float]] = []

    def limits(entity_type: str, ident: str, series: np.ndarray, profile: str) -> tuple:
        entries = []
        for duration, days in _WINDOW_DAYS.items():
            ws = z.spend(series, duration)
            max_ = size_limits(profile, ws)[1] or 1.0
            reset = next_reset(z.pop.end, duration)
            entries.append({"budget_duration": duration, "max_budget": max_, "reset_at": None})
            # a few drift below the logs; the team's weekly window keeps only half its spend
            factor = float(rng.uniform(0.85, 0.98)) if rng.random() < 0.2 else 1.0
            if (entity_type, duration) == ("team", "7d"):
                factor = 0.5
            spend = ws.current * factor
            windows.append((entity_type, ident, duration, reset - timedelta(days=days), spend))
        return tuple(entries)

    keys = list(sized["keys"])
    capped = {c.key_index for c in z.pop.capped_keys}  # only their max_budget is enforced
    for i, key in enumerate(keys):
        if key.profile == "none" or key.deleted_at or rng.random() >= BUDGET_LIMITS_KEY_SHARE:
            continue
        if i in capped:
            continue
        entries = limits("key", key.token, z.ledger.key_hourly[i], key.profile)
        keys[i] = replace(key, budget_limits=entries)
    teams = list(sized["teams"])
    for j, team in enumerate(teams):
        if team.profile != "none":
            series = z.keys_series(lambda k, t=team.team_id: k.team_id == t)
            teams[j] = replace(team, budget_limits=limits("team", team.team_id, series, "over"))
            break
    return {**sized, "keys": tuple(keys), "teams": tuple(teams)}, tuple(windows)


def _plan_change(
    z: _Sizing,
    rng: np.random.Generator,
    series: np.ndarray,
    duration: str,
    limits: tuple[float | None, float | None],
    not_before: datetime,
) -> tuple[datetime, float, float | None, float] | None:
    """When and from what a row's limits ``(soft, max)`` (the current ones) changed inside its
    current period of ``duration``, given the hourly spend ``series`` it counts: ``(changed_at,
    old max, old soft, spend before the change)``, or ``None`` when the period has too little
    spend. The change falls in a clock hour after ``not_before``'s, and the spend of the whole
    hours before it decides: if the period's spend reaches the new max, the change comes after
    the spend reached it and the old max was above the period's spend (a lowering: crossed at
    once under the limit in force, earlier under the current one); else the change comes once a
    fifth of the spend was made and the old max was half the spend before it (a raise: crossed
    before the change, never under the current limit). The old soft budget keeps the ratio of
    soft to max."""
    soft, max_ = limits
    if max_ is None:
        return None
    labels = period_labels(z.hours, duration)
    now = int(period_labels(np.array([z.end_hour]), duration)[0])
    end_ms = epoch_ms(z.pop.end)
    inside = np.flatnonzero((labels == now) & (z.hours * HOUR_MS < end_ms))
    if len(inside) < 2:
        return None
    hours, spend = z.hours[inside], series[inside]
    before = np.cumsum(spend) - spend  # the period's spend before each hour
    total = float(spend.sum())
    valid = hours > epoch_ms(not_before) // HOUR_MS
    lowered = total >= max_
    ok = valid & (before >= max_) if lowered else valid & (before > 0) & (before >= 0.2 * total)
    if total <= 0 or not ok.any():
        return None
    j = int(rng.choice(np.flatnonzero(ok)))
    lo = int(hours[j]) * HOUR_MS
    seconds = max((min(lo + HOUR_MS, end_ms) - lo) // 1000, 1)
    at_ms = lo + 1000 * int(rng.integers(0, seconds))
    changed_at = np.datetime64(at_ms, "ms").astype(datetime)
    if lowered:
        old_max = _money(max(1.5 * total, 2 * max_), up=True)
    else:
        old_max = _money(0.5 * float(before[j]), up=False)
    old_soft = None if soft is None else _money(soft * old_max / max_, up=False)
    return changed_at, old_max, old_soft, float(before[j])


@dataclass(frozen=True)
class _Candidate:
    """A row whose limits may change: its table, id, duration, ``(soft, max)``, the hourly spend
    it counts and its creation time."""

    table: str
    ident: str
    duration: str | None
    limits: tuple[float | None, float | None]
    series: np.ndarray
    created_at: datetime


def _change_candidates(z: _Sizing, sized: dict[str, tuple]) -> list[list[_Candidate]]:
    """The keys (live, neither capped nor rotated), the teams, and the tag and project budget
    rows that may get a limit change, one list per table."""
    skip = {c.key_index for c in z.pop.capped_keys} | {r.key_index for r in z.pop.rotations}
    keys = [
        _Candidate(
            "VerificationToken",
            k.token,
            k.budget_duration,
            (None, k.max_budget),
            z.ledger.key_hourly[i],
            k.created_at,
        )
        for i, k in enumerate(sized["keys"])
        if k.deleted_at is None and i not in skip
    ]
    teams = [
        _Candidate(
            "TeamTable",
            t.team_id,
            t.budget_duration,
            (t.soft_budget, t.max_budget),
            z.keys_series(lambda k, t=t: k.team_id == t.team_id),
            t.created_at,
        )
        for t in sized["teams"]
    ]
    held: list[tuple[str, np.ndarray]] = [
        (t.budget_id, z.ledger.tag_hourly[j])
        for j, t in enumerate(z.pop.tags)
        if t.budget_id and j < z.ledger.tag_hourly.shape[0]
    ]
    held += [
        (p.budget_id, z.keys_series(lambda k, p=p: k.project_id == p.project_id))
        for p in z.pop.projects
        if p.budget_id
    ]
    budgets = [
        _Candidate(
            "BudgetTable",
            b.budget_id,
            b.budget_duration,
            (b.soft_budget, b.max_budget),
            series,
            b.created_at,
        )
        for b, series in ((z.budgets[budget_id], series) for budget_id, series in held)
    ]
    return [keys, teams, budgets]


def _limit_changes(z: _Sizing, sized: dict[str, tuple]) -> tuple[LimitChange, ...]:
    """One key, one team and one tag or project budget row (:func:`_change_candidates`), each
    with a duration of :data:`CHANGED_DURATIONS` and a max budget, whose limits changed inside
    the current period (:func:`_plan_change`); the sized limits are the new ones. Audited when
    the proxy stores audit logs. Draws from its own stream, so nothing else changes."""
    rng = np.random.default_rng([z.pop.seed, 9])
    audited = z.pop.audit_logging
    changes = []
    for options in _change_candidates(z, sized):
        options = [
            o for o in options if o.duration in CHANGED_DURATIONS and o.limits[1] is not None
        ]
        for n in rng.permutation(len(options)).tolist():
            o = options[n]
            planned = _plan_change(z, rng, o.series, str(o.duration), o.limits, o.created_at)
            if planned is None:
                continue
            changed_at, old_max, old_soft, spend_before = planned
            changes.append(
                LimitChange(
                    table=o.table,
                    entity_id=o.ident,
                    budget_duration=str(o.duration),
                    changed_at=changed_at,
                    old_max_budget=old_max,
                    old_soft_budget=old_soft,
                    new_max_budget=o.limits[1],
                    new_soft_budget=o.limits[0],
                    audited=audited,
                    audit_row_id=seeded_uuid(rng) if audited else "",
                    spend_before=None if o.table == "BudgetTable" else spend_before,
                )
            )
            break
    return tuple(changes)


def finalize(population: Population, ledger: SpendLedger) -> Population:
    """The population with budget amounts, ``budget_reset_at`` and live ``spend`` counters."""
    z = _Sizing(population, ledger)
    sized = {
        "keys": _size_keys(z),
        "users": _size_users(z),
        "teams": _size_teams(z),
        "organizations": _size_organizations(z),
        "team_members": _size_team_members(z),
        "end_users": _size_end_users(z),
        "tags": _size_tags(z),
        "projects": _size_projects(z),  # last: the drift draws of the others stay as they were
        "rotations": _size_rotations(z),  # no draws
    }
    sized = _size_model_budgets(z, sized)
    sized, window_spend = _size_budget_limits(z, sized)
    return replace(
        population,
        **sized,
        limit_changes=_limit_changes(z, sized),
        window_spend=window_spend,
        budgets=tuple(z.budgets[b.budget_id] for b in population.budgets),
        drifted=frozenset(z.drifted),
    )
