"""Rows as the proxy writes them: population tables as dicts, logs as COPY text columns.

Pure. Spend-log and error-log columns are lists of PostgreSQL COPY *text format* fields
(already escaped; ``\\N`` = NULL), keyed by column name, so the writer can send exactly the
columns a given schema version has. Static JSON fragments (per key, per deployment, per failure
kind) are rendered once; per row only numbers and ids are filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from psycopg.types.json import Jsonb

from dagster_project.simulator.budgets import epoch_ms
from dagster_project.simulator.catalog import (
    ADMIN_USER_ID,
    AUTH_FAILURE,
    BUDGET_FAILURE,
    EXTRA_TAGS,
    FAILURES,
    MASTER_KEY,
    ModelSpec,
)
from dagster_project.simulator.population import (
    CREATOR,
    Budget,
    Key,
    LimitChange,
    Population,
    Rotation,
    Team,
)
from dagster_project.simulator.workload import Batch

NULL = "\\N"


def copy_escape(text: str) -> str:
    """Escape a value for COPY text format (backslash, tab, newline, carriage return)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _json(value: object) -> str:
    return copy_escape(json.dumps(value))


def format_ms(ms: np.ndarray) -> list[str]:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.fff`` strings (naive UTC)."""
    return np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")).tolist()


def uuid_text(a: int, b: int) -> str:
    """A uuid4-shaped string from two non-negative 63-bit integers."""
    h = f"{a:016x}{b:016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def model_map_information(spec: ModelSpec) -> dict:
    """A trimmed ``model_map_information`` (upstream's is ~4 KB; a few hundred bytes here)."""
    chat = not spec.is_embedding
    key = spec.model.split("/", 1)[-1]
    return {
        "model_map_key": key,
        "model_map_value": {
            "key": key,
            "max_input_tokens": 128000 if chat else 8191,
            "input_cost_per_token": spec.input_cost_per_token,
            "output_cost_per_token": spec.output_cost_per_token,
            "litellm_provider": spec.provider,
            "mode": "chat" if chat else "embedding",
            "supports_function_calling": chat,
            "supports_prompt_caching": spec.provider in ("openai", "anthropic", "azure"),
        },
    }


def _usage_extras(spec: ModelSpec) -> dict:
    if spec.provider in ("anthropic", "bedrock"):
        return {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return {
        "completion_tokens_details": None,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": None},
    }


def _error_information(spec: ModelSpec | None, exception_type: str, code: str, msg: str) -> dict:
    """``metadata.error_information`` of a failure row (``spec`` ``None``: no provider, the
    proxy itself raised it)."""
    provider = spec.provider if spec else ""
    return {
        "error_code": code,
        "error_class": exception_type,
        "llm_provider": provider,
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "litellm/proxy/proxy_server.py", line 3891, in chat_completion\n'
            f"litellm.exceptions.{exception_type}: {msg}\n"
        ),
        "error_message": _error_message(provider, exception_type, msg),
    }


def _error_message(provider: str, exception_type: str, msg: str) -> str:
    if not provider:
        return f"litellm.{exception_type}: {msg}"
    return f"litellm.{exception_type}: {provider}Exception - {msg}"


@dataclass(frozen=True)
class TextPlan:
    """Pre-rendered text of everything that is constant per key, deployment or failure kind."""

    key_token: list[str]
    key_user: list[str]
    key_team: list[str]
    key_org: list[str]
    key_ip: list[str]
    key_cache_enabled: list[bool]
    key_tags: list[list[str]]
    model_name: list[str]
    model_id: list[str]
    model_group: list[str]
    provider: list[str]
    api_base: list[str]
    call_type: list[str]
    id_style: list[int]
    model_meta: list[str]
    failure_meta: list[list[str]]
    failure_type: list[str]
    failure_code: list[str]
    failure_text: list[list[str]]
    # per failure kind: raised by the proxy at authentication (no key, budget exceeded), before
    # any deployment was picked: the row has the model group as model and no provider
    failure_at_auth: list[bool]
    end_user: list[str]
    # Key rotations: per key index (the last two: no key, master key) the rotation instants in
    # epoch ms, and the hash and metadata fragment of each era, oldest first (the last = live).
    key_rotated_ms: list[np.ndarray]
    key_hashes: list[tuple[str, ...]]
    key_metas: list[tuple[str, ...]]

    def eras(self, key: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
        """Which hash each request's key had when it started: the number of the key's rotations
        at or before ``start_ms`` (0 for keys never rotated), strictly by time."""
        era = np.zeros(len(key), dtype=np.int64)
        for k, rotated in enumerate(self.key_rotated_ms):
            if len(rotated):
                rows = key == k
                era[rows] = np.searchsorted(rotated, start_ms[rows], side="right")
        return era


def _key_meta(key: Key | None, pop: Population, token: str, email: str | None) -> str:
    team = next((t for t in pop.teams if key and t.team_id == key.team_id), None)
    user_id = (key.user_id if key else None) or (ADMIN_USER_ID if token == MASTER_KEY else None)
    prefix = {
        "user_api_key": token or None,
        "user_api_key_alias": key.key_alias if key else None,
        "user_api_key_team_id": key.team_id if key else None,
        "user_api_key_org_id": key.organization_id if key else None,
        "user_api_key_user_id": user_id,
        "user_api_key_team_alias": team.team_alias if team else None,
        "user_api_key_user_email": email,
        "user_api_key_project_id": key.project_id if key else None,  # newer proxies
        "spend_logs_metadata": None,
    }
    return _json(prefix)[:-1] + ", "


def _tag_variants(user_agent: str, defaults: tuple[str, ...]) -> list[str]:
    base = [f"User-Agent: {user_agent}", *defaults]
    return ["[]", _json(base)] + [_json([*base, extra]) for extra in EXTRA_TAGS]


def build_text_plan(pop: Population) -> TextPlan:
    """Render the constant text of ``pop`` once. Index ``-1`` = master key, ``-2`` = no key."""
    emails = {u.user_id: u.user_email for u in pop.users}
    tokens = [k.token for k in pop.keys] + ["", MASTER_KEY]  # [..., no key (-2), master (-1)]
    specs = [d.spec for d in pop.deployments]
    # indexes match workload's AUTH_FAILURE_KIND and BUDGET_FAILURE_KIND
    failure_kinds = [*FAILURES, AUTH_FAILURE, BUDGET_FAILURE]
    # A budget refusal names no provider (BudgetExceededError has none); the other kinds keep
    # the model's, as before.
    raised_by = [[None if f is BUDGET_FAILURE else s for s in specs] for f in failure_kinds]
    return TextPlan(
        key_token=tokens,
        key_user=[k.user_id or "" for k in pop.keys] + ["", ADMIN_USER_ID],
        key_team=[k.team_id or "" for k in pop.keys] + ["", ""],
        key_org=[k.organization_id or "" for k in pop.keys] + ["", ""],
        key_ip=[k.requester_ip for k in pop.keys] + ["", "10.0.0.2"],
        key_cache_enabled=[k.cache_enabled for k in pop.keys] + [False, True],
        key_tags=[_tag_variants(k.user_agent, k.default_tags) for k in pop.keys]
        + [_tag_variants("python-requests/2.32.3", ()), _tag_variants("curl/8.5.0", ())],
        model_name=[s.model for s in specs],
        model_id=[d.model_id for d in pop.deployments],
        model_group=[s.model_group for s in specs],
        provider=[s.provider for s in specs],
        api_base=[s.api_base for s in specs],
        call_type=[s.call_type for s in specs],
        id_style=[
            2
            if s.is_embedding
            else 0
            if s.provider in ("openai", "azure")
            else 1
            if s.provider == "anthropic"
            else 2
            for s in specs
        ],
        model_meta=[
            ", ".join(
                [
                    f'"model_map_information": {_json(model_map_information(s))}',
                    f'"additional_usage_values": {_json(_usage_extras(s))}',
                    '"applied_guardrails": [], "mcp_tool_call_metadata": null',
                ]
            )
            for s in specs
        ],
        failure_meta=[
            [_json(_error_information(s, f.exception_type, f.status_code, f.message)) for s in by]
            for f, by in zip(failure_kinds, raised_by, strict=True)
        ],
        failure_type=[f.exception_type for f in failure_kinds],
        failure_code=[f.status_code for f in failure_kinds],
        failure_text=[
            [
                copy_escape(_error_message(s.provider if s else "", f.exception_type, f.message))
                for s in by
            ]
            for f, by in zip(failure_kinds, raised_by, strict=True)
        ],
        failure_at_auth=[f in (AUTH_FAILURE, BUDGET_FAILURE) for f in failure_kinds],
        end_user=[e.user_id for e in pop.end_users],
        key_rotated_ms=[
            np.array([epoch_ms(r.rotated_at) for r in pop.rotations_of(i)], dtype=np.int64)
            for i in range(len(pop.keys))
        ]
        + [np.zeros(0, dtype=np.int64)] * 2,
        key_hashes=[pop.key_hashes(i) for i in range(len(pop.keys))] + [(t,) for t in tokens[-2:]],
        key_metas=[
            tuple(
                _key_meta(k, pop, h, emails.get(k.user_id) if k.user_id else None)
                for h in pop.key_hashes(i)
            )
            for i, k in enumerate(pop.keys)
        ]
        + [(_key_meta(None, pop, t, None),) for t in tokens[-2:]],
    )


SPEND_LOG_COLUMNS: tuple[str, ...] = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "completionStartTime",
    "request_duration_ms",
    "model",
    "model_id",
    "model_group",
    "custom_llm_provider",
    "api_base",
    "user",
    "metadata",
    "cache_hit",
    "cache_key",
    "request_tags",
    "team_id",
    "organization_id",
    "end_user",
    "requester_ip_address",
    "session_id",
    "status",
    "litellm_call_id",
    "created_at",
    "updated_at",
)
"""Every SpendLogs column the simulator can fill, in table order of the latest schema."""

ERROR_LOG_COLUMNS: tuple[str, ...] = (
    "request_id",
    "startTime",
    "endTime",
    "api_base",
    "model_group",
    "litellm_model_name",
    "model_id",
    "request_kwargs",
    "exception_type",
    "exception_string",
    "status_code",
)

_REQUEST_KWARGS = (
    '{"stream": false, "max_tokens": 1024}',
    '{"stream": true, "temperature": 0.2}',
    '{"user": "customer", "max_tokens": 4096, "temperature": 0.7}',
    "{}",
)


def _response_id(style: int, a: int, b: int) -> str:
    """A provider-shaped response id: OpenAI ``chatcmpl-``, Anthropic ``msg_``, else a uuid."""
    if style == 0:
        return f"chatcmpl-{a:016x}{b & 0xFFFFFFFFFFFFF:013x}"
    if style == 1:
        return f"msg_{a:016x}{b & 0xFFFFFFFF:08x}"
    return uuid_text(a, b)


def _success_metadata(
    model_meta: str, prompt: int, completion: int, spend: float, overhead_ms: float
) -> str:
    """The per-request tail of a success row's ``metadata`` (after the key fragment)."""
    return (
        f"{model_meta}, "
        f'"usage_object": {{"prompt_tokens": {prompt}, "completion_tokens": {completion}, '
        f'"total_tokens": {prompt + completion}}}, "cost_breakdown": {{"total_cost": {spend!r}}}, '
        f'"litellm_overhead_time_ms": {overhead_ms:.2f}, "status": "success", '
        '"error_information": null}'
    )


def _failure_metadata(error_information: str) -> str:
    """The tail of a failure row's ``metadata``: status and ``error_information``."""
    return f'"usage_object": null, "status": "failure", "error_information": {error_information}}}'


def spend_log_columns(batch: Batch, text: TextPlan, *, stamp_created: bool) -> dict[str, list]:
    """COPY text fields of the SpendLogs rows of ``batch`` (``created_at`` = flush time).

    One pass over plain Python lists: at a million rows per run, per-row work is kept to
    lookups into the pre-rendered :class:`TextPlan` and a few f-strings.
    """
    n = len(batch["start_ms"])
    keys = batch["key"].tolist()
    models = batch["model"].tolist()
    fkinds = batch["failure_kind"].tolist()
    hits = batch["cache_hit"].tolist()
    spend = batch["spend"].tolist()
    prompt = batch["prompt_tokens"].tolist()
    completion = batch["completion_tokens"].tolist()
    end_ms = batch["end_ms"].tolist()
    sub_ms = batch["sub_ms"].tolist()
    tags = batch["tag_variant"].tolist()
    extra = batch["extra_tag"].tolist()
    eus = batch["end_user"].tolist()
    ids = batch["ids"].tolist()
    duration = (batch["end_ms"] - batch["start_ms"]).tolist()
    eras = text.eras(batch["key"], batch["start_ms"]).tolist()

    cols: dict[str, list] = {name: [None] * n for name in SPEND_LOG_COLUMNS}
    n_extra = len(EXTRA_TAGS)
    for i, (k, m, fk, hit, sp, pt, ct, e, sub, tv, ex, eu, rid) in enumerate(
        zip(
            keys,
            models,
            fkinds,
            hits,
            spend,
            prompt,
            completion,
            end_ms,
            sub_ms,
            tags,
            extra,
            eus,
            ids,
            strict=True,
        )
    ):
        failed = fk >= 0
        auth = failed and text.failure_at_auth[fk]  # refused before a deployment was picked
        ki = k if k >= 0 else len(text.key_token) + k  # -1 master, -2 none
        call_id = uuid_text(rid[2], rid[3])
        request_id = call_id if failed else _response_id(text.id_style[m], rid[0], rid[1])
        if hit:  # upstream appends the cache-hit time to the cached response's id
            request_id = f"{request_id}_cache_hit{e / 1000 + sub / 1e6:.6f}"
        cols["request_id"][i] = request_id
        cols["call_type"][i] = text.call_type[m]
        cols["api_key"][i] = text.key_hashes[ki][eras[i]]  # the hash the key had then
        cols["spend"][i] = repr(sp)
        cols["total_tokens"][i] = str(pt + ct)
        cols["prompt_tokens"][i] = str(pt)
        cols["completion_tokens"][i] = str(ct)
        cols["request_duration_ms"][i] = str(duration[i])
        cols["model"][i] = text.model_group[m] if auth else text.model_name[m]
        cols["model_id"][i] = "" if auth else text.model_id[m]
        cols["model_group"][i] = text.model_group[m]
        cols["custom_llm_provider"][i] = "" if auth else text.provider[m]
        cols["api_base"][i] = "" if auth else text.api_base[m]
        cols["user"][i] = text.key_user[ki]
        status = "failure" if failed else "success"
        body = (
            _failure_metadata(text.failure_meta[fk][m])
            if failed
            else _success_metadata(text.model_meta[m], pt, ct, sp, sub / 100)
        )
        ip = text.key_ip[ki]
        meta = text.key_metas[ki][eras[i]]
        cols["metadata"][i] = f'{meta}"requester_ip_address": "{ip}", {body}'
        cols["cache_hit"][i] = "True" if hit else "False"
        cache_on = text.key_cache_enabled[ki]
        cols["cache_key"][i] = (
            "" if failed else f"{rid[4]:016x}{rid[5]:016x}" if cache_on else "Cache OFF"
        )
        cols["request_tags"][i] = text.key_tags[ki][
            0 if tv == 0 else 1 if tv == 1 else 2 + ex % n_extra
        ]
        cols["team_id"][i] = text.key_team[ki]
        cols["organization_id"][i] = text.key_org[ki]
        cols["end_user"][i] = text.end_user[eu] if eu >= 0 else ""
        cols["requester_ip_address"][i] = ip
        cols["session_id"][i] = uuid_text(rid[6], rid[7])
        cols["status"][i] = status
        cols["litellm_call_id"][i] = call_id
    cols["startTime"] = format_ms(batch["start_ms"])
    cols["endTime"] = format_ms(batch["end_ms"])
    cols["completionStartTime"] = format_ms(batch["completion_start_ms"])
    if stamp_created:
        cols["created_at"] = cols["updated_at"] = format_ms(batch["flush_ms"])
    else:
        del cols["created_at"], cols["updated_at"]
    return cols


def error_log_columns(batch: Batch, text: TextPlan) -> dict[str, list]:
    """COPY text fields of the ErrorLogs rows of the failures in ``batch`` (one per failure).

    Failures raised at authentication get one too, with empty deployment columns (refused
    before one was picked): budget refusals do what requests without a key (``AUTH_FAILURE``)
    already did, because both are refused at the same point, where upstream's post-call failure
    hook passes the error to the failure callbacks a failed call goes through (the ErrorLogs
    writer among them, as we read it), and so that every SpendLogs failure row keeps its one
    ErrorLogs row, which the simulator's tests check.
    """
    failed = batch["failure_kind"] >= 0
    if not failed.any():
        return {name: [] for name in ERROR_LOG_COLUMNS}
    models = batch["model"][failed].tolist()
    fkinds = batch["failure_kind"][failed].tolist()
    ids = batch["ids"][failed].tolist()
    at = format_ms(batch["start_ms"][failed])
    auth = [text.failure_at_auth[f] for f in fkinds]
    return {
        "request_id": [uuid_text(r[6] ^ r[2], r[7] ^ r[3]) for r in ids],
        "startTime": at,
        "endTime": at,
        "api_base": ["" if a else text.api_base[m] for a, m in zip(auth, models, strict=True)],
        "model_group": [text.model_group[m] for m in models],
        "litellm_model_name": [text.model_name[m] for m in models],
        "model_id": ["" if a else text.model_id[m] for a, m in zip(auth, models, strict=True)],
        "request_kwargs": [_REQUEST_KWARGS[r[0] % len(_REQUEST_KWARGS)] for r in ids],
        "exception_type": [text.failure_type[f] for f in fkinds],
        "exception_string": [text.failure_text[f][m] for f, m in zip(fkinds, models, strict=True)],
        "status_code": [text.failure_code[f] for f in fkinds],
    }


def population_rows(pop: Population, prefix: str) -> dict[str, list[dict]]:
    """Rows of every population table, keyed by table name without prefix, in insert order
    (``prefix`` is the proxy's table prefix, which ``AuditLog.table_name`` carries)."""
    ts = pop.start
    changed = {(c.table, c.entity_id): c.changed_at for c in pop.limit_changes}
    budgets = [_budget_row(b, changed.get(("BudgetTable", b.budget_id))) for b in pop.budgets]
    orgs = [
        {
            "organization_id": o.organization_id,
            "organization_alias": o.organization_alias,
            "budget_id": o.budget_id,
            "metadata": Jsonb({}),
            "models": [],
            "spend": o.spend,
            "created_at": o.created_at,
            "created_by": CREATOR,
            "updated_at": o.created_at,
            "updated_by": CREATOR,
        }
        for o in pop.organizations
    ]
    emails = {u.user_id: u.user_email for u in pop.users}
    teams = [_team_row(t, emails, changed.get(("TeamTable", t.team_id))) for t in pop.teams]
    users = [
        {
            "user_id": u.user_id,
            "user_alias": u.user_alias,
            "user_email": u.user_email,
            "user_role": u.user_role,
            "organization_id": u.organization_id,
            "teams": list(u.teams),
            "max_budget": u.max_budget,
            "spend": u.spend,
            "models": [],
            "budget_duration": u.budget_duration,
            "budget_reset_at": u.budget_reset_at,
            "model_max_budget": Jsonb(u.model_max_budget or {}),
            "created_at": u.created_at,
            "updated_at": u.created_at,
        }
        for u in pop.users
    ]
    keys = [
        _key_row(k, pop.rotations_of(i), changed.get(("VerificationToken", k.token)))
        for i, k in enumerate(pop.keys)
        if k.deleted_at is None
    ]
    deleted = [_deleted_row(_key_row(k), k.deleted_row_id, k.deleted_at) for k in pop.deleted_keys]
    rotations = _rotation_rows(pop, prefix)
    end_users = [
        {
            "user_id": e.user_id,
            "alias": e.alias,
            "spend": e.spend,
            "budget_id": e.budget_id,
            "blocked": False,
        }
        for e in pop.end_users
    ]
    team_members = [
        {
            "user_id": m.user_id,
            "team_id": m.team_id,
            "spend": m.spend,
            "total_spend": m.total_spend,
            "budget_id": m.budget_id,
        }
        for m in pop.team_members
    ]
    org_members = [
        {
            "user_id": m.user_id,
            "organization_id": m.organization_id,
            "user_role": m.user_role,
            "spend": 0.0,
            "created_at": ts,
            "updated_at": ts,
        }
        for m in pop.org_members
    ]
    models = [
        {
            "model_id": d.model_id,
            "model_name": d.spec.model_group,
            "litellm_params": Jsonb(
                {
                    "model": d.spec.model,
                    "api_base": d.spec.api_base,
                    "api_key": f"os.environ/{d.spec.provider.upper()}_API_KEY",
                    "input_cost_per_token": d.spec.input_cost_per_token,
                    "output_cost_per_token": d.spec.output_cost_per_token,
                }
            ),
            "model_info": Jsonb({"id": d.model_id, "db_model": True}),
            "created_at": ts,
            "created_by": CREATOR,
            "updated_at": ts,
            "updated_by": CREATOR,
        }
        for d in pop.deployments
        if d.spec.in_db
    ]
    tags = [
        {
            "tag_name": t.tag_name,
            "description": f"Traffic tagged {t.tag_name}",
            "models": [],
            "spend": t.spend,
            "budget_id": t.budget_id,
            "created_at": t.created_at,
            "created_by": CREATOR,
            "updated_at": t.created_at,
        }
        for t in pop.tags
    ]
    projects = [
        {
            "project_id": p.project_id,
            "project_alias": p.project_alias,
            "description": f"Project {p.project_alias}",
            "team_id": p.team_id,
            "budget_id": p.budget_id,
            "metadata": Jsonb({}),
            "models": [],
            "spend": p.spend,
            "model_spend": Jsonb({}),
            "blocked": False,
            "created_at": p.created_at,
            "created_by": CREATOR,
            "updated_at": p.created_at,
            "updated_by": CREATOR,
        }
        for p in pop.projects
    ]
    return {
        "BudgetTable": budgets,
        "OrganizationTable": orgs,
        "TeamTable": teams,
        "UserTable": users,
        # after BudgetTable and TeamTable, before the keys (foreign keys); skipped where the
        # schema lacks it (and so does the keys' project_id column)
        "ProjectTable": projects,
        "VerificationToken": keys,
        "DeletedVerificationToken": deleted + rotations["DeletedVerificationToken"],
        # skipped where the schema lacks them (DeprecatedVerificationToken before 2026-02)
        "AuditLog": rotations["AuditLog"] + _limit_change_audit_rows(pop, prefix, emails),
        "DeprecatedVerificationToken": rotations["DeprecatedVerificationToken"],
        "EndUserTable": end_users,
        "TeamMembership": team_members,
        "OrganizationMembership": org_members,
        "ProxyModelTable": models,
        "TagTable": tags,  # after BudgetTable (foreign key); skipped where the schema lacks it
        "BudgetWindowSpend": [  # skipped where the schema lacks it (before 2026-08)
            {
                "entity_type": entity_type,
                "entity_id": entity_id,
                "window_duration": duration,
                "window_start": window_start,
                "spend": spend,
                "created_at": window_start,
                "updated_at": pop.end,
            }
            for entity_type, entity_id, duration, window_start, spend in pop.window_spend
        ],
    }


def _deleted_row(row: dict, row_id: str, deleted_at: datetime | None) -> dict:
    """A ``DeletedVerificationToken`` row: the key row plus the deletion metadata."""
    return {
        **row,
        "id": row_id,
        "deleted_at": deleted_at,
        "deleted_by": CREATOR,
        "deleted_by_api_key": None,
        "litellm_changed_by": None,
    }


def _plain(row: dict) -> dict:
    """A population row (key, team, budget) as JSON values (``AuditLog.before_value``)."""
    return {
        name: value.obj
        if isinstance(value, Jsonb)
        else value.isoformat()
        if isinstance(value, datetime)
        else value
        for name, value in row.items()
    }


def _rotation_rows(pop: Population, prefix: str) -> dict[str, list[dict]]:
    """What the proxy's regenerate endpoint leaves per rotation: the old row (old hash, the
    rotation count, spend counter and reset as they were then) copied into
    ``DeletedVerificationToken``; with audit logging an ``AuditLog`` row (action ``rotated``,
    object id = old hash, the old row before and the new hash after); with a grace period still
    running at the end a ``DeprecatedVerificationToken`` row (the proxy deletes it after
    ``revoke_at``). The live row itself is updated in place (:func:`_key_row`)."""
    out: dict[str, list[dict]] = {
        "DeletedVerificationToken": [],
        "AuditLog": [],
        "DeprecatedVerificationToken": [],
    }
    for i, key in enumerate(pop.keys):
        rotations = pop.rotations_of(i)
        names = [r.old_key_name for r in rotations] + [key.key_name]
        for j, r in enumerate(rotations):
            old = {
                **_key_row(key, rotations[:j]),
                "token": r.old_token,
                "key_name": r.old_key_name,
                "spend": r.spend,
                "budget_reset_at": r.budget_reset_at,
            }
            out["DeletedVerificationToken"].append(
                _deleted_row(old, r.deleted_row_id, r.rotated_at)
            )
            if r.evidence == "audit_log":
                out["AuditLog"].append(
                    {
                        "id": r.evidence_row_id,
                        "updated_at": r.rotated_at,
                        "changed_by": CREATOR,
                        "changed_by_api_key": MASTER_KEY,
                        "action": "rotated",
                        "table_name": f"{prefix}VerificationToken",
                        "object_id": r.old_token,
                        "before_value": Jsonb(_plain(old)),
                        "updated_values": Jsonb(
                            {
                                "token": r.new_token,
                                "key_name": names[j + 1],
                                "rotation_count": r.number,
                                "last_rotation_at": r.rotated_at.isoformat(),
                                "updated_at": r.rotated_at.isoformat(),
                            }
                        ),
                    }
                )
            if r.evidence == "deprecated_token" and r.revoke_at and r.revoke_at > pop.end:
                out["DeprecatedVerificationToken"].append(
                    {
                        "id": r.evidence_row_id,
                        "token": r.old_token,
                        "active_token_id": r.new_token,
                        "revoke_at": r.revoke_at,
                        "created_at": r.rotated_at,
                    }
                )
    return out


def _budget_row(b: Budget, changed_at: datetime | None = None) -> dict:
    """A ``BudgetTable`` row (``changed_at``: its limits were last edited then)."""
    return {
        "budget_id": b.budget_id,
        "max_budget": b.max_budget,
        "soft_budget": b.soft_budget,
        "budget_duration": b.budget_duration,
        "budget_reset_at": b.budget_reset_at,
        "model_max_budget": Jsonb(b.model_max_budget or {}),
        "created_at": b.created_at,
        "created_by": CREATOR,
        "updated_at": changed_at or b.created_at,
        "updated_by": CREATOR,
    }


def _team_row(t: Team, emails: dict[str, str], changed_at: datetime | None = None) -> dict:
    """A ``TeamTable`` row (``changed_at``: its limits were last edited then)."""
    return {
        "team_id": t.team_id,
        "team_alias": t.team_alias,
        "organization_id": t.organization_id,
        "admins": [],
        "members": list(t.members),
        "members_with_roles": Jsonb(
            [{"role": "user", "user_id": m, "user_email": emails[m]} for m in t.members]
        ),
        "metadata": Jsonb({"soft_budget_alerting_emails": ["finops@dheera.example"]}),
        "max_budget": t.max_budget,
        "soft_budget": t.soft_budget,
        "spend": t.spend,
        "models": [],
        "budget_duration": t.budget_duration,
        "budget_reset_at": t.budget_reset_at,
        "model_max_budget": Jsonb(t.model_max_budget or {}),
        "budget_limits": Jsonb(list(t.budget_limits)) if t.budget_limits else None,
        "created_at": t.created_at,
        "updated_at": changed_at or t.created_at,
    }


def _limit_change_audit_rows(pop: Population, prefix: str, emails: dict[str, str]) -> list[dict]:
    """An ``AuditLog`` row per audited limit change (action ``updated``, as the proxy's key,
    team and budget update endpoints write it): the row as it was before (old limits, the spend
    counter then, the previous ``updated_at``) and the changed limit columns after."""
    rows = []
    for c in pop.limit_changes:
        if not c.audited:
            continue
        before = _before_change(pop, c, emails)
        after = {"max_budget": c.new_max_budget}
        if c.old_soft_budget != c.new_soft_budget:
            after["soft_budget"] = c.new_soft_budget
        rows.append(
            {
                "id": c.audit_row_id,
                "updated_at": c.changed_at,
                "changed_by": CREATOR,
                "changed_by_api_key": MASTER_KEY,
                "action": "updated",
                "table_name": f"{prefix}{c.table}",
                "object_id": c.entity_id,
                "before_value": Jsonb(_plain(before)),
                "updated_values": Jsonb(after),
            }
        )
    return rows


def _before_change(pop: Population, c: LimitChange, emails: dict[str, str]) -> dict:
    """The row ``c`` changed, as it was just before the change."""
    old = {"max_budget": c.old_max_budget}
    if c.table == "VerificationToken":
        i = next(i for i, k in enumerate(pop.keys) if k.token == c.entity_id)
        row = _key_row(pop.keys[i], pop.rotations_of(i))
    elif c.table == "TeamTable":
        row = _team_row(next(t for t in pop.teams if t.team_id == c.entity_id), emails)
    else:
        row = _budget_row(next(b for b in pop.budgets if b.budget_id == c.entity_id))
    if "soft_budget" in row:
        old["soft_budget"] = c.old_soft_budget
    if c.spend_before is not None:
        old["spend"] = c.spend_before
    return {**row, **old}


def _key_row(
    k: Key, rotations: tuple[Rotation, ...] = (), changed_at: datetime | None = None
) -> dict:
    """A ``VerificationToken`` row of ``k`` after ``rotations`` (its hash is ``k.token``;
    ``changed_at``: its limits were last edited then, after the rotations)."""
    created: datetime = k.created_at
    last = rotations[-1].rotated_at if rotations else None
    return {
        "token": k.token,
        "key_name": k.key_name,
        "key_alias": k.key_alias,
        "spend": k.spend,
        "models": [],
        "user_id": k.user_id,
        "team_id": k.team_id,
        "organization_id": k.organization_id,
        "metadata": Jsonb({"tags": list(k.default_tags)} if k.default_tags else {}),
        "max_budget": k.max_budget,
        "budget_duration": k.budget_duration,
        "budget_reset_at": k.budget_reset_at,
        "model_max_budget": Jsonb(k.model_max_budget or {}),
        "budget_limits": Jsonb(list(k.budget_limits)) if k.budget_limits else None,
        "budget_id": k.budget_id,
        "project_id": k.project_id,
        "created_at": created,
        "created_by": k.user_id or CREATOR,
        "updated_at": changed_at or last or created,
        "updated_by": CREATOR if changed_at or last else k.user_id or CREATOR,
        "rotation_count": len(rotations),
        "last_rotation_at": last,
    }
