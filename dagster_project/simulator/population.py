"""Seeded generator of the proxy's population: orgs, teams, users, keys, end users, tags,
projects, budgets, and key rotations (:class:`Rotation`).

Pure: the same seed and time range give the same population. Budget amounts and live ``spend``
counters are filled in later by :mod:`dagster_project.simulator.budgets`, from the spend the
workload actually generated, so that budget crossings are guaranteed rather than likely.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from dagster_project.simulator.catalog import (
    ADMIN_USER_ID,
    BUDGET_DURATIONS,
    EXTRA_TAGS,
    FIRST_NAMES,
    MODELS,
    ORG_NAMES,
    TEAM_NAMES,
    USER_AGENTS,
    ModelSpec,
)

PROFILES: tuple[str, ...] = ("none", "under", "soft", "over")
"""Budget profiles: no limits; never crossed; soft crossed only; soft and max crossed."""

CREATOR = ADMIN_USER_ID
"""``created_by`` / ``updated_by`` of management rows (the admin made them in the UI)."""

_KEY_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))

ROTATED_KEY_SHARE = 0.1
"""Share of the live keys regenerated inside the simulated range (at least one from 10 keys)."""
TWICE_ROTATED_SHARE = 0.3
"""Share of the rotated keys regenerated twice (chains old1 -> old2 -> live; at least one)."""
ROTATION_EVIDENCE: tuple[str, ...] = ("audit_log", "deprecated_token", "none")
"""What a rotation leaves besides the ``DeletedVerificationToken`` copy of the old row: an
``AuditLog`` row (audit logging on), a ``DeprecatedVerificationToken`` row (a grace period still
running at the end of the range; the proxy deletes the row after ``revoke_at``), or nothing."""
GRACE_PERIODS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("72h", timedelta(hours=72)),
    ("7d", timedelta(days=7)),
)
"""``grace_period`` of a regenerate call with a ``deprecated_token`` rotation."""
CAPPED_KEY_SLOTS: tuple[tuple[str | None, ...], ...] = (("1d", "7d"), (None,))
"""One capped key per slot (:class:`CappedKey`): a ``budget_duration`` the key has (the first of
the slot when the key drawn had another one)."""


@dataclass(frozen=True)
class PopulationSpec:
    """How many entities of each kind to generate."""

    organizations: int = 4
    teams: int = 12
    users: int = 40
    keys: int = 80
    end_users: int = 60
    deleted_key_share: float = 0.08


@dataclass(frozen=True)
class Budget:
    """A ``BudgetTable`` row. ``owner`` says who references it (``organization``, ``key``,
    ``team_member``, ``end_user_tier``, ``tag`` or ``project``)."""

    budget_id: str
    owner: str
    budget_duration: str | None
    created_at: datetime
    max_budget: float | None = None
    soft_budget: float | None = None
    budget_reset_at: datetime | None = None
    model_max_budget: dict | None = None  # per-model budgets of the holders (end-user tiers)


@dataclass(frozen=True, kw_only=True)
class _SpendCounters:
    """The live ``spend`` counters of a budget holder, filled in by
    :mod:`dagster_project.simulator.budgets` (``period_spend``: spend of the current period)."""

    spend: float = 0.0
    period_spend: float = 0.0


@dataclass(frozen=True, kw_only=True)
class _OwnLimits(_SpendCounters):
    """A holder whose own row carries ``max_budget`` and ``budget_reset_at`` (teams, users,
    keys), filled in with the counters."""

    max_budget: float | None = None
    budget_reset_at: datetime | None = None
    model_max_budget: dict | None = None  # {model: {budget_limit, time_period}}, if any
    budget_limits: tuple[dict, ...] | None = None  # [{budget_duration, max_budget, reset_at}]


@dataclass(frozen=True)
class Organization(_SpendCounters):
    """An ``OrganizationTable`` row; its limits live on budget row ``budget_id``."""

    organization_id: str
    organization_alias: str
    budget_id: str
    profile: str
    created_at: datetime


@dataclass(frozen=True)
class Team(_OwnLimits):
    """A ``TeamTable`` row."""

    team_id: str
    team_alias: str
    organization_id: str | None
    budget_duration: str | None
    profile: str
    created_at: datetime
    members: tuple[str, ...] = ()
    soft_budget: float | None = None


@dataclass(frozen=True)
class User(_OwnLimits):
    """An internal user (``UserTable``)."""

    user_id: str
    user_alias: str
    user_email: str
    user_role: str
    organization_id: str | None
    teams: tuple[str, ...]
    budget_duration: str | None
    profile: str
    created_at: datetime


@dataclass(frozen=True)
class Key(_OwnLimits):
    """A virtual key (``VerificationToken``); ``deleted_at`` set = moved to the deleted table."""

    token: str
    raw_key: str
    key_name: str
    key_alias: str
    user_id: str | None
    team_id: str | None
    organization_id: str | None
    budget_duration: str | None
    budget_id: str | None
    profile: str
    created_at: datetime
    deleted_at: datetime | None
    traffic_weight: float
    customer_facing: bool
    user_agent: str
    default_tags: tuple[str, ...]
    requester_ip: str
    cache_enabled: bool
    model_weights: tuple[float, ...]
    deleted_row_id: str
    soft_budget: float | None = None
    project_id: str | None = None  # ProjectTable row the key belongs to, if any


@dataclass(frozen=True)
class EndUser(_SpendCounters):
    """A customer (``EndUserTable``); ``budget_id`` points at a shared tier budget row."""

    user_id: str
    alias: str | None
    budget_id: str | None
    traffic_weight: float


@dataclass(frozen=True)
class Tag(_SpendCounters):
    """A ``TagTable`` row for a tag requests carry; ``budget_id`` = its budget row, if any (the
    proxy enforces only tags with a budget row; every request with the tag adds its full cost)."""

    tag_name: str
    budget_id: str | None
    profile: str
    created_at: datetime


@dataclass(frozen=True)
class Project(_SpendCounters):
    """A ``ProjectTable`` row of a team; ``budget_id`` = its budget row, if any (the proxy enforces
    only projects with a budget row; every request of the project's keys adds its full cost)."""

    project_id: str
    project_alias: str
    team_id: str | None
    budget_id: str | None
    profile: str
    created_at: datetime


@dataclass(frozen=True)
class TeamMember(_SpendCounters):
    """A ``TeamMembership`` row; ``budget_id`` = the member's own budget row, if any."""

    user_id: str
    team_id: str
    budget_id: str | None
    profile: str
    total_spend: float = 0.0


@dataclass(frozen=True)
class OrgMember:
    """An ``OrganizationMembership`` row."""

    user_id: str
    organization_id: str
    user_role: str


@dataclass(frozen=True)
class Deployment:
    """A model deployment; ``model_id`` is a ``ProxyModelTable`` id when ``spec.in_db``, else a
    config-derived hash that joins to nothing (like config-file models upstream)."""

    model_id: str
    spec: ModelSpec


@dataclass(frozen=True)
class Rotation:
    """One regeneration of live key ``pop.keys[key_index]`` at ``rotated_at``, as the proxy
    writes it: the old row copied into ``DeletedVerificationToken`` (row ``deleted_row_id``,
    token ``old_token``), the live row updated in place to ``new_token``, and the ``evidence``
    (:data:`ROTATION_EVIDENCE`) in row ``evidence_row_id`` (``revoke_at`` = end of the grace
    period of a ``deprecated_token`` rotation). ``number`` counts the key's rotations from 1;
    ``spend`` and ``budget_reset_at`` are the old row's counter and reset as copied, filled in by
    :mod:`dagster_project.simulator.budgets`."""

    key_index: int
    number: int
    old_token: str
    old_key_name: str
    new_token: str
    rotated_at: datetime
    evidence: str
    deleted_row_id: str
    evidence_row_id: str
    revoke_at: datetime | None = None
    spend: float = 0.0
    budget_reset_at: datetime | None = None


@dataclass(frozen=True)
class CappedKey:
    """A live key whose hard ``max_budget`` is fixed before any traffic (sized by
    :func:`dagster_project.simulator.budgets.size_caps`, small enough that traffic reaches it)
    and enforced like the proxy enforces it: once the key's charged spend in its budget period
    (``budget_duration``; ``None`` = all time) is at or over ``max_budget``, every later request
    of the key in that period is refused at authentication and written as a
    ``BudgetExceededError`` failure row (:class:`dagster_project.simulator.workload.BudgetGate`).
    ``rejected`` counts those rows flushed inside the simulated range."""

    key_index: int
    budget_duration: str | None
    max_budget: float | None = None
    rejected: int = 0


@dataclass(frozen=True)
class LimitChange:
    """A budget limit edited inside the current budget period of its row: ``table`` (unprefixed:
    ``VerificationToken``, ``TeamTable`` or ``BudgetTable``) row ``entity_id`` (token hash,
    team_id or budget_id) had ``old_*`` limits until ``changed_at`` and has ``new_*`` (the ones
    written) since; ``updated_at`` of the row is ``changed_at``. ``audited``: an ``AuditLog``
    row ``audit_row_id`` (action ``updated``) records it. ``spend_before`` is the row's spend
    counter at the change (``None`` for budget rows, which have none). Filled in by
    :mod:`dagster_project.simulator.budgets`."""

    table: str
    entity_id: str
    budget_duration: str
    changed_at: datetime
    old_max_budget: float | None
    old_soft_budget: float | None
    new_max_budget: float | None
    new_soft_budget: float | None
    audited: bool
    audit_row_id: str = ""
    spend_before: float | None = None


@dataclass(frozen=True)
class Population:
    """Everything the simulator writes besides the logs."""

    seed: int
    start: datetime
    end: datetime
    organizations: tuple[Organization, ...]
    teams: tuple[Team, ...]
    users: tuple[User, ...]
    keys: tuple[Key, ...]
    end_users: tuple[EndUser, ...]
    team_members: tuple[TeamMember, ...]
    org_members: tuple[OrgMember, ...]
    budgets: tuple[Budget, ...]
    deployments: tuple[Deployment, ...]
    tags: tuple[Tag, ...] = ()
    projects: tuple[Project, ...] = ()
    drifted: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # BudgetWindowSpend rows: (entity_type, entity_id, window_duration, window_start, spend)
    window_spend: tuple[tuple[str, str, str, datetime, float], ...] = ()
    # key regenerations, ordered by key index then time (see Rotation)
    rotations: tuple[Rotation, ...] = ()
    # keys whose max_budget is enforced during generation (see CappedKey)
    capped_keys: tuple[CappedKey, ...] = ()
    # budget limits edited inside their current period (see LimitChange)
    limit_changes: tuple[LimitChange, ...] = ()

    @property
    def audit_logging(self) -> bool:
        """Whether the proxy stores audit logs (``store_audit_logs``): as the rotations show it,
        some of which left an ``AuditLog`` row."""
        return any(r.evidence == "audit_log" for r in self.rotations)

    @property
    def rejected_requests(self) -> int:
        """Requests of capped keys refused for budget (rows flushed inside the range)."""
        return sum(c.rejected for c in self.capped_keys)

    def capped(self, key_index: int) -> CappedKey | None:
        """The :class:`CappedKey` of ``keys[key_index]``, if it is capped."""
        return next((c for c in self.capped_keys if c.key_index == key_index), None)

    def budget(self, budget_id: str | None) -> Budget | None:
        """The budget row ``budget_id`` (``None`` for ``None``)."""
        if budget_id is None:
            return None
        return next(b for b in self.budgets if b.budget_id == budget_id)

    @property
    def live_keys(self) -> tuple[Key, ...]:
        """Keys still in ``VerificationToken``."""
        return tuple(k for k in self.keys if k.deleted_at is None)

    @property
    def deleted_keys(self) -> tuple[Key, ...]:
        """Keys moved to ``DeletedVerificationToken``."""
        return tuple(k for k in self.keys if k.deleted_at is not None)

    def rotations_of(self, key_index: int) -> tuple[Rotation, ...]:
        """The rotations of ``keys[key_index]``, oldest first."""
        return tuple(r for r in self.rotations if r.key_index == key_index)

    def key_hashes(self, key_index: int) -> tuple[str, ...]:
        """Every hash ``keys[key_index]`` had, oldest first; the last is its live ``token``."""
        rotations = self.rotations_of(key_index)
        return (*(r.old_token for r in rotations), self.keys[key_index].token)


def seeded_uuid(rng: np.random.Generator) -> str:
    """A random-looking but seeded uuid4 string."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def hash_key(raw_key: str) -> str:
    """``VerificationToken.token``: the SHA-256 hex digest of the raw ``sk-...`` key."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def abbreviate_key(raw_key: str) -> str:
    """``VerificationToken.key_name``: the display form ``sk-...abcd``."""
    return f"sk-...{raw_key[-4:]}"


def _raw_key(rng: np.random.Generator) -> str:
    return "sk-" + "".join(rng.choice(_KEY_ALPHABET, size=22))


def _deployments(rng: np.random.Generator) -> tuple[Deployment, ...]:
    out = []
    for spec in MODELS:
        if spec.in_db:
            model_id = seeded_uuid(rng)
        else:
            model_id = hashlib.sha256(f"{spec.model}|{spec.api_base}".encode()).hexdigest()
        out.append(Deployment(model_id=model_id, spec=spec))
    return tuple(out)


@dataclass
class _Draw:
    """Shared state of one generation: the seeded generator, the range, the budget rows."""

    rng: np.random.Generator
    start: datetime
    end: datetime
    budgets: list[Budget] = field(default_factory=list)

    @property
    def span_s(self) -> float:
        """Length of the simulated range in seconds."""
        return (self.end - self.start).total_seconds()

    def budget(self, owner: str, duration: str | None, created_at: datetime) -> str:
        """Add a budget row (amounts are sized later); return its id."""
        budget_id = seeded_uuid(self.rng)
        self.budgets.append(Budget(budget_id, owner, duration, created_at))
        return budget_id

    def before_start(self, max_days: float) -> datetime:
        """A creation time between ``max_days`` and one day before the range starts."""
        seconds = float(self.rng.uniform(86400, max_days * 86400))
        return (self.start - timedelta(seconds=seconds)).replace(microsecond=0)

    def duration(self, options: tuple[str | None, ...] = BUDGET_DURATIONS) -> str | None:
        """One of ``options``, uniformly."""
        return options[int(self.rng.integers(len(options)))]

    def profiles(self, n: int) -> list[str]:
        """Shuffled budget profiles, every profile present as soon as ``n >= 4``."""
        return [str(p) for p in self.rng.permutation(np.resize(np.array(PROFILES), n))]


def _organizations(draw: _Draw, n: int) -> list[Organization]:
    orgs = []
    for i, profile in enumerate(draw.profiles(n)):
        created = draw.before_start(200)
        duration = draw.duration(("1mo", "30d", "7d", None))
        orgs.append(
            Organization(
                organization_id=seeded_uuid(draw.rng),
                organization_alias=ORG_NAMES[i % len(ORG_NAMES)] + (f"-{i}" if i >= 5 else ""),
                budget_id=draw.budget("organization", duration, created),
                profile=profile,
                created_at=created,
            )
        )
    return orgs


def _teams(draw: _Draw, n: int, orgs: list[Organization]) -> list[Team]:
    teams = []
    for i, profile in enumerate(draw.profiles(n)):
        org = orgs[int(draw.rng.integers(len(orgs)))] if orgs and draw.rng.random() < 0.8 else None
        teams.append(
            Team(
                team_id=seeded_uuid(draw.rng),
                team_alias=TEAM_NAMES[i % len(TEAM_NAMES)]
                + (f"-{i}" if i >= len(TEAM_NAMES) else ""),
                organization_id=org.organization_id if org else None,
                budget_duration=draw.duration(),
                profile=profile,
                created_at=draw.before_start(150),
            )
        )
    return teams


def _users(draw: _Draw, n: int, teams: list[Team]) -> list[User]:
    """The proxy admin (owner of master-key calls) and ``n`` internal users in 0-2 teams."""
    users = [
        User(
            user_id=ADMIN_USER_ID,
            user_alias="admin",
            user_email="admin@dheera.example",
            user_role="proxy_admin",
            organization_id=None,
            teams=(),
            budget_duration=None,
            profile="none",
            created_at=draw.before_start(300),
        )
    ]
    for i, profile in enumerate(draw.profiles(n)):
        n_teams = int(draw.rng.choice([0, 1, 1, 1, 2, 2])) if teams else 0
        picks = draw.rng.choice(len(teams), size=n_teams, replace=False) if n_teams else []
        my_teams = [teams[int(j)] for j in picks]
        name = FIRST_NAMES[i % len(FIRST_NAMES)] + (f"{i}" if i >= len(FIRST_NAMES) else "")
        users.append(
            User(
                user_id=seeded_uuid(draw.rng),
                user_alias=name,
                user_email=f"{name}@dheera.example",
                user_role="org_admin" if i % 11 == 0 else "internal_user",
                organization_id=next(
                    (t.organization_id for t in my_teams if t.organization_id), None
                ),
                teams=tuple(t.team_id for t in my_teams),
                budget_duration=draw.duration(),
                profile=profile,
                created_at=draw.before_start(120),
            )
        )
    return users


def _key_owner(
    draw: _Draw, teams: list[Team], people: list[User]
) -> tuple[Team | None, User | None]:
    """70 % team keys of a member, 10 % team service-account keys, 20 % personal keys."""
    roll = draw.rng.random()
    if roll < 0.8 and teams:
        team = teams[int(draw.rng.integers(len(teams)))]
        if roll >= 0.7 or not team.members:
            return team, None
        owner = team.members[int(draw.rng.integers(len(team.members)))]
        return team, next(u for u in people if u.user_id == owner)
    return None, people[int(draw.rng.integers(len(people)))] if people else None


def _key_lifetime(draw: _Draw, deleted: bool) -> tuple[datetime, datetime | None]:
    """Creation (mostly before the range, some inside it) and deletion time of a key."""
    if draw.rng.random() < 0.85:
        created = draw.before_start(90)
    else:
        created = draw.start + timedelta(seconds=float(draw.rng.uniform(0, 0.6 * draw.span_s)))
        created = created.replace(microsecond=0)
    if not deleted:
        return created, None
    lo = max(draw.start + timedelta(seconds=0.2 * draw.span_s), created + timedelta(hours=2))
    hi = draw.start + timedelta(seconds=0.95 * draw.span_s)
    seconds = float(draw.rng.uniform(0, max((hi - lo).total_seconds(), 1.0)))
    deleted_at = (lo + timedelta(seconds=seconds)).replace(microsecond=0)
    return created, deleted_at if deleted_at < draw.end else None


def _keys(draw: _Draw, spec: PopulationSpec, teams: list[Team], people: list[User]) -> list[Key]:
    rng = draw.rng
    n_deleted = max(1, round(spec.keys * spec.deleted_key_share)) if spec.keys > 1 else 0
    deleted_idx = set(rng.choice(spec.keys, size=n_deleted, replace=False).tolist())
    base_weights = np.array([m.weight for m in MODELS], dtype=float)
    keys = []
    for i, profile in enumerate(draw.profiles(spec.keys)):
        team, user = _key_owner(draw, teams, people)
        raw = _raw_key(rng)
        duration = draw.duration()
        has_soft = profile != "none" and rng.random() < 0.75
        created, deleted_at = _key_lifetime(draw, i in deleted_idx)
        tags = rng.choice(EXTRA_TAGS, size=int(rng.choice([0, 0, 1, 1, 2])), replace=False)
        weights = base_weights * rng.gamma(0.7, 1.0, size=len(MODELS))
        alias_owner = (team.team_alias if team else None) or (user.user_alias if user else "svc")
        ip = f"10.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"
        keys.append(
            Key(
                token=hash_key(raw),
                raw_key=raw,
                key_name=abbreviate_key(raw),
                key_alias=f"{alias_owner}-key-{i}",
                user_id=user.user_id if user else None,
                team_id=team.team_id if team else None,
                organization_id=team.organization_id
                if team
                else (user.organization_id if user else None),
                budget_duration=duration,
                budget_id=draw.budget("key", duration, created) if has_soft else None,
                profile=profile,
                created_at=created,
                deleted_at=deleted_at,
                traffic_weight=float(rng.lognormal(0.0, 1.1)),
                customer_facing=bool(rng.random() < 0.3),
                user_agent=str(rng.choice(USER_AGENTS)),
                default_tags=tuple(str(t) for t in tags),
                requester_ip=ip if rng.random() < 0.8 else "",
                cache_enabled=bool(rng.random() < 0.7),
                model_weights=tuple(float(w) for w in weights / weights.sum()),
                deleted_row_id=seeded_uuid(rng),
            )
        )
    return keys


def _end_users(draw: _Draw, n: int) -> list[EndUser]:
    """Customers, most on one of three shared budget tiers (``1d``, ``7d``, ``1mo``)."""
    tiers = {
        name: draw.budget("end_user_tier", duration, draw.before_start(200))
        for name, duration in (("free", "1d"), ("pro", "7d"), ("enterprise", "1mo"))
    }
    choices = ["free", "free", "pro", "enterprise", ""]
    end_users = []
    for i in range(n):
        tier = str(draw.rng.choice(choices, p=[0.3, 0.2, 0.2, 0.1, 0.2]))
        end_users.append(
            EndUser(
                user_id=f"customer-{i:04d}" if i % 3 else seeded_uuid(draw.rng),
                alias=f"Customer {i}" if draw.rng.random() < 0.5 else None,
                budget_id=tiers.get(tier),
                traffic_weight=float(draw.rng.pareto(1.5) + 0.1),
            )
        )
    return end_users


# TagTable rows: tags of EXTRA_TAGS (keys' default tags and per-request extras), by profile. A
# "none" tag has a row without budget_id (not enforced upstream); the other tags are not in
# TagTable at all (User-Agent tags and the rest of EXTRA_TAGS).
TAG_BUDGETS: tuple[tuple[str, str, str | None], ...] = (
    ("prod", "over", "1d"),
    ("staging", "soft", "7d"),
    ("feature:summarize", "under", "1mo"),
    ("feature:search", "none", None),
)


def _tags(draw: _Draw) -> list[Tag]:
    """TagTable rows (their budget rows are sized later from the tags' full-cost spend)."""
    tags = []
    for name, profile, duration in TAG_BUDGETS:
        created = draw.before_start(120)
        budget_id = None if profile == "none" else draw.budget("tag", duration, created)
        tags.append(Tag(tag_name=name, budget_id=budget_id, profile=profile, created_at=created))
    return tags


# ProjectTable rows (alias, profile, budget duration): each takes a team and about two thirds of
# that team's keys not yet in a project. A "none" project has a row without budget_id (not
# enforced upstream); the other keys belong to no project.
PROJECT_BUDGETS: tuple[tuple[str, str, str | None], ...] = (
    ("checkout-assistant", "over", "1d"),
    ("support-bot", "soft", "7d"),
    ("data-pipeline", "under", "1mo"),
    ("sandbox", "none", None),
)


def _projects(draw: _Draw, keys: list[Key]) -> tuple[list[Project], list[Key]]:
    """ProjectTable rows (budget rows sized later from their keys' spend) and the keys with their
    ``project_id``; teams with the most keys first, so that every project has keys."""
    rng = draw.rng
    by_team: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key.team_id:
            by_team.setdefault(key.team_id, []).append(i)
    teams = sorted(by_team, key=lambda t: (-len(by_team[t]), t))
    projects, keys = [], list(keys)
    for n, (alias, profile, duration) in enumerate(PROJECT_BUDGETS):
        team_id = teams[n] if n < len(teams) else None
        created = draw.before_start(100)
        project_id = seeded_uuid(rng)
        budget_id = None if profile == "none" else draw.budget("project", duration, created)
        members = by_team.get(team_id, []) if team_id else []
        picked = [i for j, i in enumerate(members) if j == 0 or rng.random() < 0.67]
        for i in picked:
            keys[i] = replace(keys[i], project_id=project_id)
        projects.append(
            Project(
                project_id=project_id,
                project_alias=alias,
                team_id=team_id,
                budget_id=budget_id,
                profile=profile,
                created_at=created,
            )
        )
    return projects, keys


def _rotations(
    rng: np.random.Generator, keys: list[Key], start: datetime, end: datetime
) -> list[Rotation]:
    """Regenerations of about :data:`ROTATED_KEY_SHARE` of the live keys (deleted keys never),
    at least an hour after creation and inside ``[start, end)``; a few keys twice. Evidence kinds
    are dealt round-robin in shuffled order, so each is present from three rotations on; a
    ``deprecated_token`` rotation falls inside its grace period's distance from ``end`` (the
    proxy deletes its row after ``revoke_at``). A rotated key keeps its drawn ``token`` as the
    live hash; the hashes it had before are drawn here, from ``rng`` alone."""
    span = end - start
    hi = end - min(timedelta(hours=1), span * 0.02)

    def earliest(key: Key) -> datetime:
        return max(start + span * 0.05, key.created_at + timedelta(hours=1))

    live = [i for i, k in enumerate(keys) if k.deleted_at is None]
    eligible = [i for i in live if earliest(keys[i]) < hi]
    if len(keys) < 10 or not eligible:
        return []
    n = min(len(eligible), max(1, round(ROTATED_KEY_SHARE * len(live))))
    picked = sorted(int(i) for i in rng.choice(eligible, size=n, replace=False))
    n_twice = max(1, round(TWICE_ROTATED_SHARE * n))
    twice = {int(i) for i in rng.choice(picked, size=n_twice, replace=False)}
    counts = [2 if i in twice else 1 for i in picked]
    kinds = iter(str(k) for k in rng.permutation(np.resize(ROTATION_EVIDENCE, sum(counts))))
    rotations = []
    for i, count in zip(picked, counts, strict=True):
        lo = earliest(keys[i])
        drawn: list[tuple[datetime, str, timedelta | None]] = []
        for _ in range(count):
            kind, grace, at_least = next(kinds), None, lo
            if kind == "deprecated_token":
                grace = GRACE_PERIODS[int(rng.integers(len(GRACE_PERIODS)))][1]
                at_least = max(lo, end - grace + timedelta(minutes=1))
            seconds = float(rng.uniform(0, (hi - at_least).total_seconds()))
            drawn.append(
                ((at_least + timedelta(seconds=seconds)).replace(microsecond=0), kind, grace)
            )
        drawn.sort(key=lambda d: d[0])
        raws = [_raw_key(rng) for _ in range(count)] + [keys[i].raw_key]
        previous: datetime | None = None
        for j, (at, kind, grace) in enumerate(drawn):
            if previous is not None and at <= previous:
                at = previous + timedelta(seconds=1)
            rotations.append(
                Rotation(
                    key_index=i,
                    number=j + 1,
                    old_token=hash_key(raws[j]),
                    old_key_name=abbreviate_key(raws[j]),
                    new_token=hash_key(raws[j + 1]),
                    rotated_at=at,
                    evidence=kind,
                    deleted_row_id=seeded_uuid(rng),
                    evidence_row_id=seeded_uuid(rng) if kind != "none" else "",
                    revoke_at=at + grace if grace is not None else None,
                )
            )
            previous = at
    return rotations


def _capped_keys(
    rng: np.random.Generator, keys: list[Key], budgets: list[Budget], start: datetime
) -> tuple[list[CappedKey], list[Key], list[Budget]]:
    """One capped key per :data:`CAPPED_KEY_SLOTS` slot, among the live keys created before the
    range (busier keys more likely): an ``over`` key with a duration of the slot if there is
    one, else any such key made ``over`` with the slot's first duration (its budget row, if
    any, follows). Amounts are sized later (:func:`~.budgets.size_caps`)."""
    keys, budgets = list(keys), list(budgets)
    capped: list[CappedKey] = []
    for slot in CAPPED_KEY_SLOTS:
        taken = {c.key_index for c in capped}
        pool = [
            i
            for i, k in enumerate(keys)
            if k.deleted_at is None and k.created_at <= start and i not in taken
        ]
        if not pool:
            break
        exact = [i for i in pool if keys[i].profile == "over" and keys[i].budget_duration in slot]
        among = exact or pool
        weights = np.array([keys[i].traffic_weight for i in among])
        i = int(among[int(rng.choice(len(among), p=weights / weights.sum()))])
        if not exact:
            keys[i] = replace(keys[i], profile="over", budget_duration=slot[0])
            budgets = [
                replace(b, budget_duration=slot[0]) if b.budget_id == keys[i].budget_id else b
                for b in budgets
            ]
        capped.append(CappedKey(key_index=i, budget_duration=keys[i].budget_duration))
    return capped, keys, budgets


def _team_members(draw: _Draw, people: list[User], teams: list[Team]) -> list[TeamMember]:
    """One membership per (user, team); about a third with their own member budget."""
    created = {t.team_id: t.created_at for t in teams}
    members = []
    for user in people:
        for team_id in user.teams:
            profile, budget_id = "none", None
            if draw.rng.random() < 0.35:
                profile = str(draw.rng.choice(["under", "soft", "over"]))
                duration = draw.duration(("1d", "7d", "1mo", None))
                budget_id = draw.budget("team_member", duration, created[team_id])
            members.append(TeamMember(user.user_id, team_id, budget_id, profile))
    return members


def generate_population(
    seed: int, start: datetime, end: datetime, spec: PopulationSpec | None = None
) -> Population:
    """Generate the population for traffic in ``[start, end)`` (naive UTC datetimes)."""
    spec = spec or PopulationSpec()
    draw = _Draw(np.random.default_rng([seed, 0]), start, end)
    orgs = _organizations(draw, spec.organizations)
    teams = _teams(draw, spec.teams, orgs)
    users = _users(draw, spec.users, teams)
    teams = [
        replace(t, members=tuple(u.user_id for u in users if t.team_id in u.teams)) for t in teams
    ]
    people = users[1:]
    keys = _keys(draw, spec, teams, people)
    end_users = _end_users(draw, spec.end_users)
    team_members = _team_members(draw, people, teams)
    org_members = [
        OrgMember(u.user_id, u.organization_id, u.user_role) for u in people if u.organization_id
    ]
    deployments = _deployments(draw.rng)
    # A generator of its own (same budget list): tags leave every other entity of a seed as it was.
    tags = _tags(replace(draw, rng=np.random.default_rng([seed, 5])))
    # Likewise for projects (and the keys' project_id).
    projects, keys = _projects(replace(draw, rng=np.random.default_rng([seed, 6])), keys)
    # Likewise for key rotations ([seed, 6] is the projects' stream).
    rotations = _rotations(np.random.default_rng([seed, 7]), keys, start, end)
    # Likewise for the capped keys (a key made 'over', its duration and budget row may change).
    capped, keys, budgets = _capped_keys(
        np.random.default_rng([seed, 8]), keys, draw.budgets, start
    )
    return Population(
        seed=seed,
        start=start,
        end=end,
        organizations=tuple(orgs),
        teams=tuple(teams),
        users=tuple(users),
        keys=tuple(keys),
        end_users=tuple(end_users),
        team_members=tuple(team_members),
        org_members=tuple(org_members),
        budgets=tuple(budgets),
        deployments=deployments,
        tags=tuple(tags),
        projects=tuple(projects),
        rotations=tuple(rotations),
        capped_keys=tuple(capped),
    )
