"""A small, deterministic raw layer for the dbt tests, built straight from the raw contract.

The tables and columns follow ``dagster_project/lib/raw_contract.py`` (fact tables) and the
proxy's column names (snapshots), so the dbt project sees what the extraction lands. The data
covers every budget source and duration kind, invalid durations, deleted and unknown keys,
multi-tag requests, tag and project budgets (and tags and projects without one), failures, cache
hits and error logs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dagster_project.lib.ingest.contract import ERROR_LOG_COLUMNS, RAW_SCHEMA, SPEND_LOG_COLUMNS

_KEY_COLUMNS = {
    "token": "varchar",
    "key_name": "varchar",
    "key_alias": "varchar",
    "user_id": "varchar",
    "team_id": "varchar",
    "organization_id": "varchar",
    "budget_id": "varchar",
    "project_id": "varchar",
    "budget_duration": "varchar",
    "max_budget": "double",
    "spend": "double",
    "blocked": "boolean",
    "expires": "timestamp",
    "budget_reset_at": "timestamp",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "metadata": "varchar",
    "model_max_budget": "varchar",
    "budget_limits": "varchar",
}
_TEAM_COLUMNS = {
    "team_id": "varchar",
    "team_alias": "varchar",
    "organization_id": "varchar",
    "budget_duration": "varchar",
    "max_budget": "double",
    "soft_budget": "double",
    "spend": "double",
    "blocked": "boolean",
    "budget_reset_at": "timestamp",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "model_max_budget": "varchar",
    "budget_limits": "varchar",
}
SNAPSHOT_COLUMNS: dict[str, dict[str, str]] = {
    "verification_tokens": _KEY_COLUMNS,
    "deleted_verification_tokens": {
        "id": "varchar",
        **_KEY_COLUMNS,
        "deleted_at": "timestamp",
    },
    "teams": _TEAM_COLUMNS,
    "deleted_teams": {"id": "varchar", **_TEAM_COLUMNS, "deleted_at": "timestamp"},
    "users": {
        "user_id": "varchar",
        "user_alias": "varchar",
        "user_email": "varchar",
        "user_role": "varchar",
        "team_id": "varchar",
        "organization_id": "varchar",
        "budget_duration": "varchar",
        "max_budget": "double",
        "spend": "double",
        "budget_reset_at": "timestamp",
        "created_at": "timestamp",
        "updated_at": "timestamp",
        "model_max_budget": "varchar",
        "budget_limits": "varchar",
    },
    "organizations": {
        "organization_id": "varchar",
        "organization_alias": "varchar",
        "budget_id": "varchar",
        "spend": "double",
        "created_at": "timestamp",
        "updated_at": "timestamp",
    },
    "end_users": {
        "user_id": "varchar",
        "alias": "varchar",
        "budget_id": "varchar",
        "spend": "double",
        "blocked": "boolean",
    },
    "team_memberships": {
        "user_id": "varchar",
        "team_id": "varchar",
        "budget_id": "varchar",
        "spend": "double",
        "total_spend": "double",
    },
    "tags": {
        "tag_name": "varchar",
        "description": "varchar",
        "budget_id": "varchar",
        "spend": "double",
        "created_at": "timestamp",
        "created_by": "varchar",
        "updated_at": "timestamp",
    },
    "projects": {
        "project_id": "varchar",
        "project_alias": "varchar",
        "description": "varchar",
        "team_id": "varchar",
        "budget_id": "varchar",
        "metadata": "varchar",
        "spend": "double",
        "blocked": "boolean",
        "created_at": "timestamp",
        "created_by": "varchar",
        "updated_at": "timestamp",
        "updated_by": "varchar",
    },
    "deprecated_verification_tokens": {
        "id": "varchar",
        "token": "varchar",
        "active_token_id": "varchar",
        "revoke_at": "timestamp",
        "created_at": "timestamp",
    },
    "audit_log": {
        "id": "varchar",
        "updated_at": "timestamp",
        "changed_by": "varchar",
        "changed_by_api_key": "varchar",
        "action": "varchar",
        "table_name": "varchar",
        "object_id": "varchar",
        "before_value": "varchar",
        "updated_values": "varchar",
    },
    "budget_limit_history": {
        "version_id": "varchar",
        "source_table": "varchar",
        "entity_id": "varchar",
        "limits_json": "varchar",
        "is_deleted": "boolean",
        "valid_from": "timestamp",
        "observed_at": "timestamp",
    },
    "budget_window_spend": {
        "entity_type": "varchar",
        "entity_id": "varchar",
        "window_duration": "varchar",
        "window_start": "timestamp",
        "spend": "double",
        "created_at": "timestamp",
        "updated_at": "timestamp",
    },
    "budgets": {
        "budget_id": "varchar",
        "max_budget": "double",
        "soft_budget": "double",
        "budget_duration": "varchar",
        "budget_reset_at": "timestamp",
        "created_at": "timestamp",
        "updated_at": "timestamp",
        "model_max_budget": "varchar",
    },
}

_ARROW_TO_SQL = {
    pa.string(): "varchar",
    pa.float64(): "double",
    pa.int64(): "bigint",
    pa.timestamp("us"): "timestamp",
}


def fact_columns(table: str) -> dict[str, str]:
    """SQL column types of a raw fact table, from the raw contract."""
    columns = SPEND_LOG_COLUMNS if table == "spend_logs" else ERROR_LOG_COLUMNS
    return {c.name: _ARROW_TO_SQL[c.type] for c in columns}


def table_columns(table: str) -> dict[str, str]:
    """SQL column types of any raw table of the test layer."""
    if table in {"spend_logs", "error_logs"}:
        return fact_columns(table)
    return SNAPSHOT_COLUMNS[table]


@dataclass
class RawDataset:
    """Rows per raw table (dicts keyed by column name)."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.setdefault(table, [])


def _ts(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)


def make_dataset(
    seed: int = 7,
    requests: int = 3000,
    start: datetime = datetime(2028, 1, 20),
    days: int = 45,
) -> RawDataset:
    """A deterministic dataset spanning ``days`` from ``start`` (covers 2028-02-29)."""
    rng = random.Random(seed)
    data = RawDataset()
    created = start - timedelta(days=3, hours=5)
    budgets = [
        # budget_id, max, soft, duration
        ("b_org_month", 900.0, 600.0, "1mo"),
        ("b_org_open", 5000.0, None, None),
        ("b_key_week", 40.0, 25.0, "7d"),
        ("b_member_day", 3.0, None, "1d"),
        ("b_member_bad", 3.0, None, "2mo"),
        ("b_enduser_hour", 0.05, 0.03, "6h"),
        ("b_enduser_default", 1.5, None, "daily"),
        ("b_key_10d", 12.0, 8.0, "10d"),
        ("b_tag_day", 2.5, 1.5, "1d"),
        ("b_tag_week", 15.0, None, "7d"),
        ("b_proj_day", 2.5, 1.5, "1d"),
        ("b_proj_month", 60.0, None, "1mo"),
    ]
    for budget_id, max_budget, soft, duration in budgets:
        data.rows("budgets").append(
            {
                "budget_id": budget_id,
                "max_budget": max_budget,
                "soft_budget": soft,
                "budget_duration": duration,
                "budget_reset_at": None,
                "created_at": created,
                "updated_at": created,
            }
        )
    orgs = [("org_a", "Org A", "b_org_month"), ("org_b", "Org B", "b_org_open")]
    for org_id, alias, budget_id in orgs:
        data.rows("organizations").append(
            {
                "organization_id": org_id,
                "organization_alias": alias,
                "budget_id": budget_id,
                "spend": rng.uniform(0, 500),
                "created_at": created,
                "updated_at": created,
            }
        )
    teams = [
        # team, org, max, soft, duration
        ("team_1", "org_a", 300.0, 200.0, "30d"),
        ("team_2", "org_a", 50.0, None, "1w"),
        ("team_3", "org_b", None, 20.0, "12h"),
        ("team_4", "org_b", 80.0, None, "30m"),
        ("team_5", "org_b", 10.0, None, "weekly"),
    ]
    for team_id, org_id, max_budget, soft, duration in teams:
        data.rows("teams").append(
            {
                "team_id": team_id,
                "team_alias": team_id.replace("_", " ").title(),
                "organization_id": org_id,
                "budget_duration": duration,
                "max_budget": max_budget,
                "soft_budget": soft,
                "spend": rng.uniform(0, 50),
                "blocked": False,
                "budget_reset_at": None,
                "created_at": created,
                "updated_at": created,
            }
        )
    data.rows("deleted_teams").append(
        {
            **data.rows("teams")[-1],
            "id": "del_team_6",
            "team_id": "team_6",
            "team_alias": "Team Six (deleted)",
            "deleted_at": start + timedelta(days=20),
        }
    )
    users = [
        ("user_1", 100.0, "1h"),
        ("user_2", 20.0, "5d"),
        ("user_3", None, None),
        ("user_4", 15.0, "hourly"),
        ("user_5", 9.0, "1M"),
        ("litellm-proxy-budget", 10000.0, "30d"),
    ]
    for user_id, max_budget, duration in users:
        data.rows("users").append(
            {
                "user_id": user_id,
                "user_alias": None,
                "user_email": f"{user_id}@example.com",
                "user_role": "internal_user",
                "team_id": None,
                "organization_id": None,
                "budget_duration": duration,
                "max_budget": max_budget,
                "spend": rng.uniform(0, 20),
                "budget_reset_at": None,
                "created_at": created,
                "updated_at": created,
            }
        )
    for user_id, team_id, budget_id in [
        ("user_1", "team_1", "b_member_day"),
        ("user_2", "team_1", None),
        ("user_2", "team_2", "b_member_bad"),
        ("user_3", "team_3", "b_member_day"),
    ]:
        data.rows("team_memberships").append(
            {
                "user_id": user_id,
                "team_id": team_id,
                "budget_id": budget_id,
                "spend": rng.uniform(0, 5),
                "total_spend": rng.uniform(5, 50),
            }
        )
    end_users = [("cust_1", "b_enduser_hour"), ("cust_2", None), ("cust_3", None)]
    for end_user_id, budget_id in end_users:
        data.rows("end_users").append(
            {
                "user_id": end_user_id,
                "alias": end_user_id.upper(),
                "budget_id": budget_id,
                "spend": rng.uniform(0, 2),
                "blocked": False,
            }
        )
    # Tag budgets: only a TagTable row with a budget row counts. "prod" and "batch" (often on the
    # same request: it counts in full for both) and "idle" (never used: only a current period)
    # have one; "exp" has a row without budget_id, "team:ml" one whose budget row does not exist,
    # and "User-Agent: curl" no row at all: none of these three has periods.
    tags = [
        ("prod", "b_tag_day"),
        ("batch", "b_tag_week"),
        ("idle", "b_tag_week"),
        ("exp", None),
        ("team:ml", "b_tag_missing"),
    ]
    for tag_name, budget_id in tags:
        data.rows("tags").append(
            {
                "tag_name": tag_name,
                "description": f"{tag_name} traffic",
                "budget_id": budget_id,
                "spend": 0.0 if tag_name == "idle" else 1.25,
                "created_at": created,
                "created_by": "admin",
                "updated_at": created,
            }
        )
    # Project budgets: a request counts for its key's project (live key, else its deleted copy)
    # when the project has a ProjectTable row with a budget row. "proj_a" (keys k1, k2) and
    # "proj_b" (no alias; key k7 and the deleted key) cross their limits, "proj_idle" has no key
    # (only a current period); "proj_free" (k3) has no budget_id, "proj_dangling" (k4) one whose
    # budget row does not exist, and k5's "proj_norow" no row at all: none of these has periods.
    projects = [
        ("proj_a", "Alpha", "team_1", "b_proj_day"),
        ("proj_b", None, "team_5", "b_proj_month"),
        ("proj_idle", "Idle", None, "b_proj_month"),
        ("proj_free", "Free", "team_2", None),
        ("proj_dangling", "Dangling", "team_3", "b_proj_missing"),
    ]
    for project_id, alias, team_id, budget_id in projects:
        data.rows("projects").append(
            {
                "project_id": project_id,
                "project_alias": alias,
                "description": f"{project_id} project",
                "team_id": team_id,
                "budget_id": budget_id,
                "metadata": "{}",
                "spend": 0.0 if project_id == "proj_idle" else 2.5,
                "blocked": False,
                "created_at": created,
                "created_by": "admin",
                "updated_at": created,
                "updated_by": "admin",
            }
        )
    key_projects = {
        "hash_k1": "proj_a",
        "hash_k2": "proj_a",
        "hash_k3": "proj_free",
        "hash_k4": "proj_dangling",
        "hash_k5": "proj_norow",
        "hash_k7": "proj_b",
    }
    keys = [
        # token, alias, user, team, org, budget, max, duration
        ("hash_k1", "key-one", "user_1", "team_1", "org_a", "b_key_week", 60.0, None),
        ("hash_k2", "key-two", "user_2", "team_1", "org_a", None, 25.0, "1d"),
        ("hash_k3", "key-three", "user_2", "team_2", "org_a", "b_key_10d", None, None),
        ("hash_k4", "key-four", "user_3", "team_3", "org_b", None, 30.0, "2h"),
        ("hash_k5", None, "user_4", "team_4", "org_b", None, 5.0, "45s"),
        ("hash_k6", "key-six", "user_5", None, None, None, 8.0, "14d"),
        ("hash_k7", "key-seven", "user_1", "team_5", "org_b", None, 4.0, "1d trailing"),
    ]
    for token, alias, user_id, team_id, org_id, budget_id, max_budget, duration in keys:
        data.rows("verification_tokens").append(
            {
                "token": token,
                "key_name": "sk-..." + token[-2:],
                "key_alias": alias,
                "user_id": user_id,
                "team_id": team_id,
                "organization_id": org_id,
                "budget_id": budget_id,
                "project_id": key_projects.get(token),
                "budget_duration": duration,
                "max_budget": max_budget,
                "spend": rng.uniform(0, 10),
                "blocked": False,
                "expires": None,
                "budget_reset_at": None,
                "created_at": created + timedelta(hours=rng.randint(0, 30)),
                "updated_at": created,
                "metadata": "{}",
            }
        )
    deleted_key = {
        **data.rows("verification_tokens")[0],
        "id": "del_1",
        "token": "hash_deleted",
        "key_alias": "key-deleted",
        "team_id": "team_6",
        "project_id": "proj_b",
        "deleted_at": start + timedelta(days=10),
    }
    data.rows("deleted_verification_tokens").append(deleted_key)

    attribution = [
        # key, user, team, org
        ("hash_k1", "user_1", "team_1", "org_a"),
        ("hash_k2", "user_2", "team_1", "org_a"),
        ("hash_k3", "user_2", "team_2", "org_a"),
        ("hash_k4", "user_3", "team_3", "org_b"),
        ("hash_k5", "user_4", "team_4", "org_b"),
        ("hash_k6", "user_5", "", ""),
        ("hash_k7", "user_1", "team_5", "org_b"),
        ("hash_deleted", "user_1", "team_6", "org_a"),
        ("hash_unknown", "", "", ""),
        ("", "", "", ""),
    ]
    tags_pool = ["prod", "batch", "User-Agent: curl", "exp", "team:ml"]
    models = [("gpt-4o", "openai"), ("claude-3", "anthropic"), ("titan", "bedrock"), ("", "")]
    span = days * 86400
    for i in range(requests):
        key, user, team, org = rng.choice(attribution)
        model_group, provider = rng.choice(models)
        started = _ts(start, rng.uniform(0, span))
        started = started.replace(microsecond=(started.microsecond // 1000) * 1000)
        duration_s = rng.uniform(0.05, 30)
        ended = started + timedelta(seconds=round(duration_s, 3))
        failure = rng.random() < 0.07
        status = "failure" if failure else rng.choice(["success"] * 9 + [None])
        n_tags = rng.choice([0, 0, 1, 1, 2, 3])
        tags = rng.sample(tags_pool, n_tags)
        if n_tags and rng.random() < 0.1:
            tags.append(tags[0])  # duplicate tag in one request
        spend = 0.0 if failure else round(rng.uniform(0, 0.4), rng.choice([6, 9, 12, 15]))
        first_token = None if rng.random() < 0.3 else started + timedelta(seconds=duration_s / 3)
        prompt = rng.randint(0, 3000)
        completion = rng.randint(0, 1000)
        data.rows("spend_logs").append(
            {
                "request_id": f"req_{i:06d}",
                "call_type": "acompletion",
                "api_key": key,
                "spend": spend,
                "total_tokens": prompt + completion,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "start_time": started,
                "end_time": ended,
                "completion_start_time": first_token or ended,
                "request_duration_ms": None if rng.random() < 0.5 else int(duration_s * 1000),
                "model": model_group,
                "model_id": "",
                "model_group": model_group,
                "custom_llm_provider": provider,
                "api_base": "",
                "user_id": user,
                "end_user": rng.choice(["cust_1", "cust_2", "cust_3", "cust_9", ""]),
                "team_id": team,
                "organization_id": org if rng.random() < 0.7 else None,
                "cache_hit": rng.choice(["True", "False", "False", ""]),
                "cache_key": "",
                "request_tags": json.dumps(tags),
                "metadata": "{}",
                "requester_ip_address": None,
                "session_id": None,
                "status": status,
                "meta_key_alias": f"alias-of-{key}" if key else None,
                "meta_team_alias": f"alias-of-{team}" if team else None,
                "meta_organization_id": org or None,
                "_extracted_at": ended + timedelta(seconds=30),
                "_batch_id": "b1",
            }
        )
    for i in range(requests // 20):
        started = _ts(start, rng.uniform(0, span))
        model_group, provider = rng.choice(models)
        data.rows("error_logs").append(
            {
                "request_id": f"err_{i:05d}",
                "start_time": started,
                "end_time": started + timedelta(seconds=1),
                "api_base": "",
                "model_group": model_group,
                "litellm_model_name": f"{provider}/{model_group}" if provider else model_group,
                "model_id": "",
                "request_kwargs": "{}",
                "exception_type": rng.choice(["RateLimitError", "APIError", ""]),
                "exception_string": "boom",
                "status_code": rng.choice(["429", "500", ""]),
                "_extracted_at": started + timedelta(seconds=5),
                "_batch_id": "b1",
            }
        )
    _add_model_budgets(data, start, days)
    _add_budget_limits(data)
    _add_rotations(data, start, days)
    _add_request_projects(data)
    _add_limit_history(data, start)
    _add_audited_limit_changes(data, start)
    return data


LIMIT_CHANGES = {
    # (source table, id) -> [(valid_from, limits)], oldest first; the last = the row as it is now
    ("budgets", "b_key_week"): [
        (None, {"max_budget": 3.0, "soft_budget": 2.0, "budget_duration": "7d"}),
        (
            timedelta(days=10, hours=5),
            {"max_budget": 40.0, "soft_budget": 25.0, "budget_duration": "7d"},
        ),
    ],
    ("verification_tokens", "hash_k2"): [
        (None, {"max_budget": 0.3, "budget_duration": "1d"}),
        (timedelta(days=20, hours=13), {"max_budget": 25.0, "budget_duration": "1d"}),
    ],
    ("team_memberships", "team_1/user_1"): [  # linked another budget row until day 8
        (None, {"budget_id": "b_tag_day"}),
        (timedelta(days=8, hours=14), {"budget_id": "b_member_day"}),
    ],
    ("budgets", "b_gone"): [  # a budget row deleted since: its versions stay
        (None, {"max_budget": 5.0, "budget_duration": "1d"}),
        (timedelta(days=3), None),
    ],
}


def _add_limit_history(data: RawDataset, start: datetime) -> None:
    """The warehouse's own history of limits (raw.budget_limit_history): the key-week budget row
    and key k2's own max budget were raised inside a period (their earlier periods cross the
    lower limits in force then); user_1's membership of team_1 switched budget rows; a budget
    row was deleted."""
    for (table, ident), versions in LIMIT_CHANGES.items():
        for offset, limits in versions:
            valid_from = None if offset is None else start + offset
            data.rows("budget_limit_history").append(
                {
                    "version_id": f"{table}/{ident}/{valid_from}",
                    "source_table": table,
                    "entity_id": ident,
                    "limits_json": None if limits is None else json.dumps(limits),
                    "is_deleted": limits is None,
                    "valid_from": valid_from,
                    "observed_at": (valid_from or start) + timedelta(minutes=15),
                }
            )


def _audit_update(
    data: RawDataset, table: str, ident: str, at: datetime, before: dict, updated: dict
) -> None:
    data.rows("audit_log").append(
        {
            "id": f"audit_update_{table}_{ident}_{at:%d%H%M}",
            "updated_at": at,
            "changed_by": "admin",
            "changed_by_api_key": "",
            "action": "updated",
            "table_name": f"LiteLLM_{table}",
            "object_id": ident,
            "before_value": json.dumps(before, default=str),
            "updated_values": json.dumps(updated, default=str),
        }
    )


def _add_audited_limit_changes(data: RawDataset, start: datetime) -> None:
    """Limit changes only the proxy's audit log shows ('updated' rows): team_2's max budget was
    5 until day 12 (no snapshot saw it); the key-week budget row was lowered to 1.5 on day 4 and
    raised back on day 6, between two snapshots; team_3's 7d window was 2.5 until day 15; key
    k2's max budget was 0.1 until 10 minutes before the first snapshot (which dates its first
    version); key k1's gpt-4o budget was 0.4 until day 9. An alias change (team_5) is no limit
    change."""
    team = {t["team_id"]: t for t in data.rows("teams")}
    _audit_update(
        data,
        "TeamTable",
        "team_2",
        start + timedelta(days=12),
        {**team["team_2"], "max_budget": 5.0},
        {"max_budget": 50.0},
    )
    _audit_update(
        data,
        "TeamTable",
        "team_5",
        start + timedelta(days=8),
        {**team["team_5"], "team_alias": "Old Five"},
        {"team_alias": "Team 5"},
    )
    week = {
        "budget_id": "b_key_week",
        "max_budget": 3.0,
        "soft_budget": 2.0,
        "budget_duration": "7d",
    }
    _audit_update(
        data, "BudgetTable", "b_key_week", start + timedelta(days=4), week, {"max_budget": 1.5}
    )
    _audit_update(
        data,
        "BudgetTable",
        "b_key_week",
        start + timedelta(days=6),
        {**week, "max_budget": 1.5},
        {"max_budget": 3.0},
    )
    windows = json.loads(team["team_3"]["budget_limits"])
    lower = [{**w, "max_budget": "2.5"} if w.get("budget_duration") == "7d" else w for w in windows]
    _audit_update(
        data,
        "TeamTable",
        "team_3",
        start + timedelta(days=15),
        {**team["team_3"], "budget_limits": lower},
        {"budget_limits": windows},
    )
    k1 = next(k for k in data.rows("verification_tokens") if k["token"] == "hash_k1")
    entries = json.loads(k1["model_max_budget"])
    lower = {**entries, "gpt-4o": {**entries["gpt-4o"], "budget_limit": 0.4}}
    _audit_update(
        data,
        "VerificationToken",
        "hash_k1",
        start + timedelta(days=9, hours=7),
        {**k1, "model_max_budget": lower},
        {"model_max_budget": entries},
    )
    _audit_update(
        data,
        "VerificationToken",
        "hash_k2",
        start + timedelta(minutes=5),
        {"token": "hash_k2", "max_budget": 0.1, "budget_duration": "1d"},
        {"max_budget": 0.3},
    )


def _add_request_projects(data: RawDataset) -> None:
    """Newer proxies name the project in the request's metadata: every tenth request of key k3
    (whose own project, proj_free, has no budget) names proj_a, which then counts it; one names a
    project without a row (counted for none). The extraction flattens the name into
    meta_project_id ('' when absent), which wins over the metadata: half of those requests name
    proj_a there only, and every request of key k1 (project proj_a) has ''. The other rows were
    landed before that column (null): dbt parses their metadata."""
    k3 = [r for r in data.rows("spend_logs") if r["api_key"] == "hash_k3"]
    for number, request in enumerate(k3[::10]):
        if number % 2:
            request["metadata"] = json.dumps({"user_api_key_project_id": "proj_a"})
        else:
            request["meta_project_id"] = "proj_a"
    k3[1]["metadata"] = json.dumps({"user_api_key_project_id": "proj_unknown"})
    for request in data.rows("spend_logs"):
        if request["api_key"] == "hash_k1":
            request["meta_project_id"] = ""


def _rotate(data: RawDataset, live: str, old: str, at: datetime) -> None:
    """Key ``live`` had hash ``old`` until ``at``: its earlier requests carry the old hash, and the
    rotation left a deleted copy of the row under the old hash (as the proxy's regenerate does)."""
    row = next(k for k in data.rows("verification_tokens") if k["token"] == live)
    data.rows("deleted_verification_tokens").append(
        {**row, "id": f"del_{old}", "token": old, "deleted_at": at}
    )
    for request in data.rows("spend_logs"):
        if request["api_key"] == live and request["start_time"] < at:
            request["api_key"] = old


def _audit_rotation(data: RawDataset, old: str, new: str, at: datetime, prefix: str) -> None:
    data.rows("audit_log").append(
        {
            "id": f"audit_{old}",
            "updated_at": at,
            "changed_by": "admin",
            "changed_by_api_key": "",
            "action": "rotated",
            "table_name": f"{prefix}VerificationToken",
            "object_id": old,
            "before_value": json.dumps({"token": old}),
            "updated_values": json.dumps({"token": new}),
        }
    )


def _add_rotations(data: RawDataset, start: datetime, days: int) -> None:
    """Key rotations, each on different evidence: k2 (an audit row), k4 twice (v1 -> v2 by an
    audit row with the other table prefix, v2 -> live by a deprecated-token row in its grace
    period), k6 (only the deleted copy, matched on created_at, alias, user and team). A decoy:
    a deleted copy of k7 created 10 days earlier (a key deleted and re-created) is not k7."""
    span = timedelta(days=days)
    _rotate(data, "hash_k2", "hash_k2_old", start + span / 2)
    _audit_rotation(data, "hash_k2_old", "hash_k2", start + span / 2, "LiteLLM_")
    _rotate(data, "hash_k4", "hash_k4_v1", start + span / 3)
    _rotate(data, "hash_k4", "hash_k4_v2", start + span * 2 / 3)
    _audit_rotation(data, "hash_k4_v1", "hash_k4_v2", start + span / 3, "Dheera AI_")
    data.rows("deprecated_verification_tokens").append(
        {
            "id": "dep_hash_k4_v2",
            "token": "hash_k4_v2",
            "active_token_id": "hash_k4",
            "revoke_at": start + span * 2,
            "created_at": start + span * 2 / 3,
        }
    )
    _rotate(data, "hash_k6", "hash_k6_old", start + span / 4)
    k7 = next(k for k in data.rows("verification_tokens") if k["token"] == "hash_k7")
    data.rows("deleted_verification_tokens").append(
        {
            **k7,
            "id": "del_k7_first",
            "token": "hash_k7_first",
            "created_at": k7["created_at"] - timedelta(days=10),
            "deleted_at": start,
        }
    )


_BUDGET_LIMITS: dict[tuple[str, str], Any] = {
    # (raw table, id) -> budget_limits (multi-window budgets)
    ("verification_tokens", "hash_k1"): [
        {"budget_duration": "1d", "max_budget": 2.0, "reset_at": None},
        {"budget_duration": "30d", "max_budget": 20},
    ],
    ("verification_tokens", "hash_k4"): [
        {"budget_duration": "1d", "max_budget": 1},
        {"budget_duration": "1d", "max_budget": 2},  # the same window twice: an error
    ],
    ("verification_tokens", "hash_k5"): [
        {"max_budget": 3},  # no duration: an error
        {"budget_duration": "2mo", "max_budget": 1},  # invalid duration
    ],
    ("teams", "team_3"): [
        {"budget_duration": "1h", "max_budget": 0.5},
        {"budget_duration": "7d", "max_budget": "7.5"},
    ],
    ("teams", "team_4"): {"budget_duration": "1d", "max_budget": 1},  # not a list
    ("users", "user_2"): [{"budget_duration": "1d", "max_budget": 0.5}],  # where users have it
}


def _add_budget_limits(data: RawDataset) -> None:
    """Multi-window budgets (budget_limits) on keys and teams, valid and not."""
    for (table, ident), value in _BUDGET_LIMITS.items():
        column = {"verification_tokens": "token", "teams": "team_id", "users": "user_id"}[table]
        row = next(r for r in data.rows(table) if r[column] == ident)
        row["budget_limits"] = json.dumps(value)
    # The proxy's BudgetWindowSpend rows: one that agrees with the logs, one that drifted (a 30d
    # window of a 31-day month: the proxy stores reset_at - 30 days, the 2nd, as its start), one
    # whose window start the warehouse's periods do not share, one of a window not configured.
    day = datetime(2028, 3, 1)
    for entity_type, ident, window, stored_start, start, days, extra in [
        ("key", "hash_k1", "1d", day, day, 1, 0.0),
        ("key", "hash_k1", "30d", datetime(2028, 4, 1) - timedelta(days=30), day, 31, 5.0),
        ("team", "team_3", "7d", datetime(2028, 2, 28), datetime(2028, 2, 28), 7, 0.0),
        ("team", "team_3", "1h", *[day + timedelta(hours=11, minutes=30)] * 2, 0, 0.0),
        ("team", "team_3", "12h", day, day, 0, 0.0),
    ]:
        column = "api_key" if entity_type == "key" else "team_id"
        spent = sum(
            r["spend"]
            for r in data.rows("spend_logs")
            if r[column] == ident and start <= r["start_time"] < start + timedelta(days=days)
        )
        data.rows("budget_window_spend").append(
            {
                "entity_type": entity_type,
                "entity_id": ident,
                "window_duration": window,
                "window_start": stored_start,
                "spend": spent + extra,
                "created_at": start,
                "updated_at": day + timedelta(hours=11),
            }
        )


_MODEL_BUDGETS: dict[tuple[str, str, str], Any] = {
    # (raw table, id column, id) -> model_max_budget
    ("verification_tokens", "token", "hash_k1"): {
        "gpt-4o": {"budget_limit": 1.5, "time_period": "7d"}  # overrides team_1's gpt-4o
    },
    ("teams", "team_id", "team_1"): {
        "gpt-4o": {"max_budget": 100, "budget_duration": "30d"},  # the other spelling
        "claude-3": {"budget_limit": "0.8", "time_period": "2d"},  # a limit as a JSON string
    },
    ("deleted_verification_tokens", "token", "hash_deleted"): {
        "gpt-4o": {"budget_limit": 0.5, "time_period": "1d"}
    },
    ("teams", "team_id", "team_2"): ["gpt-4o"],  # not an object: an error for team_2's keys
    ("verification_tokens", "token", "hash_k3"): {"titan": {"budget_limit": 2}},  # never resets
    ("verification_tokens", "token", "hash_k6"): {
        "gpt-4o": {"budget_limit": 1, "time_period": "2mo"}  # invalid duration
    },
    ("users", "user_id", "user_2"): {"titan": {"budget_limit": 1.0, "time_period": "12h"}},
    ("users", "user_id", "user_4"): {
        "gpt-4o": {"time_period": "1d"},  # no limit
        "claude-3": {"budget_limit": "lots", "time_period": "1d"},  # not a number
    },
    ("users", "user_id", "litellm-proxy-budget"): {"gpt-4o": {"budget_limit": 1}},  # ignored
    ("budgets", "budget_id", "b_enduser_hour"): {
        "claude-3": {"budget_limit": 0.5, "time_period": "1mo"}  # cust_1's budget row
    },
}


def _add_model_budgets(data: RawDataset, start: datetime, days: int) -> None:
    """Per-model budgets (model_max_budget) on keys, teams, users and a budget row, and requests
    of key k2 whose model carries a provider prefix (anthropic/claude-3, no model_group): they
    count against team_1's claude-3 entry once the prefix is dropped; some have zero spend."""
    for (table, column, ident), value in _MODEL_BUDGETS.items():
        row = next(r for r in data.rows(table) if r[column] == ident)
        row["model_max_budget"] = json.dumps(value)
    template = next(r for r in data.rows("spend_logs") if r["api_key"] == "hash_k2")
    for i in range(60):
        started = start + timedelta(hours=i * days * 24 / 60, minutes=7 * (i % 5))
        data.rows("spend_logs").append(
            {
                **template,
                "request_id": f"req_prefixed_{i:03d}",
                "start_time": started,
                "end_time": started + timedelta(seconds=2),
                "completion_start_time": started + timedelta(seconds=1),
                "model": "anthropic/claude-3",
                "model_group": "",
                "end_user": "cust_1",
                "spend": 0.0 if i % 7 == 3 else 0.05 + (i % 4) * 0.1,
                "_extracted_at": started + timedelta(seconds=30),
            }
        )


def create_raw_tables(conn: duckdb.DuckDBPyConnection, tables: list[str]) -> None:
    """Create empty raw tables (schema ``raw``) with the test layer's columns."""
    conn.execute(f"create schema if not exists {RAW_SCHEMA}")
    for table in tables:
        cols = ", ".join(f'"{name}" {typ}' for name, typ in table_columns(table).items())
        conn.execute(f"create or replace table {RAW_SCHEMA}.{table} ({cols})")


def insert_rows(conn: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    """Append rows (missing columns = NULL) to a raw table."""
    if not rows:
        return
    columns = list(table_columns(table))
    batch = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    conn.register("_batch", batch)
    try:
        conn.execute(f"insert into {RAW_SCHEMA}.{table} by name select * from _batch")
    finally:
        conn.unregister("_batch")


def write_raw_layer(path: Path, data: RawDataset, omit: frozenset[str] = frozenset()) -> None:
    """Create the raw layer in the DuckDB file at ``path`` (tables in ``omit`` left absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tables = [t for t in ["spend_logs", "error_logs", *SNAPSHOT_COLUMNS] if t not in omit]
    with duckdb.connect(str(path)) as conn:
        create_raw_tables(conn, tables)
        for table in tables:
            insert_rows(conn, table, data.rows(table))
