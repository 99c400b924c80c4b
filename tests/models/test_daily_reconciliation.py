"""fct_daily_spend_reconciliation on a designed population, on DuckDB and on PostgreSQL.

The proxy's requests are listed once; the spend logs and the five daily aggregate tables are then
written from them the way the proxy writes them, with one designed difference per class:
spend-log retention (days before the earliest kept log, and a partly deleted first day),
disabled spend logs (a whole day without logs), a lost flush batch (one request's increments
missing from every daily table), a counter reset (an end user's daily rows restarted mid-day),
tag fan-out (two-tag requests, a repeated tag), a day still in flight, and one unexplained
difference (a team's daily spend above its logs). The expected rows (classes and both sides'
totals) are computed here from the request list and the scenario, not by the SQL under test.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from dagster_project.lib.dbt.postgres_raw import load_raw_to_postgres
from dagster_project.lib.ingest.contract import RAW_SCHEMA
from tests.models.dbt_runner import DbtFailedError, duckdb_env, run_dbt
from tests.models.raw_data import create_raw_tables, insert_rows
from tests.models.test_parity_postgres import _postgres_env

pytestmark = pytest.mark.integration

MART = "fct_daily_spend_reconciliation"
SELECT = f"+{MART}"
FIRST_DAY = datetime(2028, 1, 1)
DAYS = 12
KEPT_FROM = datetime(2028, 1, 3, 12)  # retention: logs before this instant were deleted
DISABLED = (datetime(2028, 1, 7), datetime(2028, 1, 8))  # disable_spend_logs was on
LOST_REQUEST_DAY = date(2028, 1, 5)
RESET_END_USER, RESET_DAY, RESET_AT = "eu-1", date(2028, 1, 9), datetime(2028, 1, 9, 14)
UNEXPLAINED_TEAM, UNEXPLAINED_DAY, UNEXPLAINED_USD = "team-a", date(2028, 1, 10), 1.25
IN_FLIGHT_USER = "user-3"
FLUSH = timedelta(seconds=10)

USERS = ("user-1", "user-2", "user-3", None)  # None: requests without a user (master key)
TEAMS = {"user-1": "team-a", "user-2": "team-a", "user-3": "team-b", None: None}
ORGS = {"team-a": "org-1", "team-b": None, None: None}
KEYS = {"user-1": "k1", "user-2": "k2", "user-3": "k3", None: "litellm_proxy_master_key"}
TAG_LISTS = (["prod"], ["prod", "search"], [], ["batch"], ["batch", "batch"])

DAILY_TABLES = {
    "user": ("daily_user_spend", "user_id"),
    "team": ("daily_team_spend", "team_id"),
    "organization": ("daily_organization_spend", "organization_id"),
    "end_user": ("daily_end_user_spend", "end_user_id"),
    "tag": ("daily_tag_spend", "tag"),
}
DAILY_COLUMNS = {
    "id": "varchar",
    "date": "varchar",
    "api_key": "varchar",
    "model": "varchar",
    "model_group": "varchar",
    "custom_llm_provider": "varchar",
    "prompt_tokens": "bigint",
    "completion_tokens": "bigint",
    "spend": "double",
    "api_requests": "bigint",
    "successful_requests": "bigint",
    "failed_requests": "bigint",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}


@dataclass(frozen=True)
class Request:
    """One request as the proxy's payload carries it."""

    request_id: str
    start: datetime
    user: str | None
    end_user: str | None
    tags: tuple[str, ...]
    model: str
    spend: float
    prompt: int
    completion: int
    status: str | None  # 'success', 'failure', or None (rows written before May 2025)

    @property
    def team(self) -> str | None:
        return TEAMS[self.user]

    @property
    def organization(self) -> str | None:
        return ORGS[self.team]

    def entities(self) -> list[tuple[str, str | None]]:
        """The daily-table rows the proxy adds this request to: its user (even none), its team
        and organization when it has one, its end user when not empty, every tag in full."""
        out: list[tuple[str, str | None]] = [("user", self.user)]
        if self.team:
            out.append(("team", self.team))
        if self.organization:
            out.append(("organization", self.organization))
        if self.end_user:
            out.append(("end_user", self.end_user))
        out += [("tag", tag) for tag in self.tags]
        return out


def make_requests(seed: int = 11) -> list[Request]:
    """Traffic every hour of every day (no accidental logging gap), mixed entities and tags."""
    rng = random.Random(seed)
    requests = []
    for hour in range(DAYS * 24):
        for _ in range(rng.randint(1, 3)):
            start = FIRST_DAY + timedelta(hours=hour, seconds=rng.randint(0, 3599))
            user = rng.choice(USERS)
            failed = rng.random() < 0.08
            requests.append(
                Request(
                    request_id=f"req-{len(requests):05d}",
                    start=start,
                    user=user,
                    end_user=rng.choice(["eu-1", "eu-2", None]) if user else None,
                    tags=tuple(rng.choice(TAG_LISTS)),
                    model=rng.choice(["gpt-4o", "claude-3-5-sonnet"]),
                    spend=0.0 if failed else round(rng.uniform(0.0001, 0.05), 6),
                    prompt=0 if failed else rng.randint(10, 4000),
                    completion=0 if failed else rng.randint(1, 800),
                    status="failure" if failed else rng.choice(["success", "success", None]),
                )
            )
    reset_day = [
        r.start for r in requests if (r.end_user, r.start.date()) == (RESET_END_USER, RESET_DAY)
    ]
    # The end user's first request of the reset day long before the restart, and some after it.
    assert min(reset_day) < RESET_AT - timedelta(hours=2) < RESET_AT < max(reset_day)
    return requests


def is_logged(request: Request) -> bool:
    """Whether the request's spend log survives: not deleted by retention, not written while
    spend logs were disabled."""
    return request.start >= KEPT_FROM and not DISABLED[0] <= request.start < DISABLED[1]


def lost_request(requests: list[Request]) -> Request:
    """The request whose daily increments the proxy lost (a dropped flush batch): a user-2
    request with a tag, an end user and spend, and not the first request of the day of any
    entity it counts for (the daily rows exist before it: its loss is not a late creation)."""
    day = [r for r in requests if r.start.date() == LOST_REQUEST_DAY]
    first = {}
    for r in sorted(day, key=lambda r: r.start):
        for entity in r.entities():
            first.setdefault(entity, r)
    return next(
        r
        for r in day
        if r.user == "user-2"
        and r.end_user
        and r.tags
        and r.spend > 0
        and all(first[entity] is not r for entity in r.entities())
    )


def in_flight_request(requests: list[Request]) -> Request:
    """The last request of the last day: counted in the daily tables, its spend log not yet
    flushed when both were read."""
    return max((r for r in requests if r.user == IN_FLIGHT_USER), key=lambda r: r.start)


def daily_rows(requests: list[Request], *, unexplained: bool = True) -> dict[str, list[dict]]:
    """The five daily tables as the proxy fills them from every request's payload (float sums of
    increments, one row per entity, date, key, model and provider), with the designed gaps (and,
    with ``unexplained``, one team row of UNEXPLAINED_DAY raised by UNEXPLAINED_USD)."""
    lost = lost_request(requests)
    acc: dict[tuple, dict] = {}
    for r in requests:
        if r is lost:
            continue
        for kind, ident in r.entities():
            restarted = (kind, ident, r.start.date()) == ("end_user", RESET_END_USER, RESET_DAY)
            if restarted and r.start < RESET_AT:  # the rows were deleted at RESET_AT, restarted
                continue
            grain = (kind, ident, r.start.date().isoformat(), KEYS[r.user], r.model)
            row = acc.setdefault(
                grain,
                {
                    "spend": 0.0,
                    "api_requests": 0,
                    "successful_requests": 0,
                    "failed_requests": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "created_at": r.start + FLUSH,
                    "updated_at": r.start + FLUSH,
                },
            )
            row["spend"] += r.spend
            row["api_requests"] += 1
            ok = r.status != "failure"
            row["successful_requests"] += int(ok)
            row["failed_requests"] += int(not ok)
            row["prompt_tokens"] += r.prompt
            row["completion_tokens"] += r.completion
            row["created_at"] = min(row["created_at"], r.start + FLUSH)
            row["updated_at"] = max(row["updated_at"], r.start + FLUSH)
    tables: dict[str, list[dict]] = defaultdict(list)
    bump = unexplained
    for (kind, ident, day, key, model), row in sorted(acc.items(), key=lambda kv: str(kv[0])):
        if bump and (kind, ident, day) == ("team", UNEXPLAINED_TEAM, UNEXPLAINED_DAY.isoformat()):
            row = {**row, "spend": row["spend"] + UNEXPLAINED_USD}
            bump = False
        column = DAILY_TABLES[kind][1]
        tables[kind].append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_OID, repr((kind, ident, day, key, model)))),
                column: "" if ident is None else ident,
                "date": day,
                "api_key": key,
                "model": model,
                "model_group": model,
                "custom_llm_provider": "openai" if model.startswith("gpt") else "anthropic",
                **row,
            }
        )
    return {DAILY_TABLES[kind][0]: rows for kind, rows in tables.items()}


def spend_log_rows(requests: list[Request]) -> list[dict]:
    """The SpendLogs rows that are still there (raw contract columns)."""
    flying = in_flight_request(requests)
    return [
        {
            "request_id": r.request_id,
            "call_type": "acompletion",
            "api_key": KEYS[r.user],
            "spend": r.spend,
            "prompt_tokens": r.prompt,
            "completion_tokens": r.completion,
            "total_tokens": r.prompt + r.completion,
            "start_time": r.start,
            "end_time": r.start + timedelta(seconds=2),
            "completion_start_time": r.start + timedelta(seconds=1),
            "model": r.model,
            "model_group": r.model,
            "custom_llm_provider": "openai" if r.model.startswith("gpt") else "anthropic",
            "user_id": r.user or "",
            "team_id": r.team or "",
            "organization_id": r.organization or "",
            "end_user": r.end_user or "",
            "request_tags": json.dumps(list(r.tags)),
            "metadata": "{}",
            "cache_hit": "False",
            "status": r.status,
            "_extracted_at": datetime(2028, 1, 13, 1),
            "_batch_id": "b1",
        }
        for r in requests
        if is_logged(r) and r is not flying
    ]


def write_layer(path: Path, logs: list[dict], daily: dict[str, list[dict]]) -> None:
    """The raw layer: spend logs and the daily tables present in ``daily`` (the columns of
    their first migrations plus request_id on tags; newer columns absent, as on older proxies)."""
    with duckdb.connect(str(path)) as conn:
        create_raw_tables(conn, ["spend_logs"])
        insert_rows(conn, "spend_logs", logs)
        for table, rows in daily.items():
            column = next(c for t, c in DAILY_TABLES.values() if t == table)
            columns = {column: "varchar", **DAILY_COLUMNS}
            if table == "daily_tag_spend":
                columns["request_id"] = "varchar"
            ddl = ", ".join(f'"{name}" {typ}' for name, typ in columns.items())
            conn.execute(f"create table {RAW_SCHEMA}.{table} ({ddl})")
            batch = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
            conn.register("_daily", batch)
            conn.execute(f"insert into {RAW_SCHEMA}.{table} by name select * from _daily")
            conn.unregister("_daily")


def money(value: float) -> Decimal:
    """A float8 amount as the warehouse's exact money (half up at 1e-10 USD)."""
    return Decimal(repr(value)).quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)


def expected_rows(requests: list[Request]) -> dict[tuple, dict]:
    """(entity_type, entity_id, spend_date) -> class and both sides' totals, from the scenario."""
    lost, flying = lost_request(requests), in_flight_request(requests)
    logged: dict[tuple, dict] = defaultdict(lambda: defaultdict(Decimal))
    for r in requests:
        if not is_logged(r) or r is flying:
            continue
        for kind, ident in [("user", r.user), ("team", r.team), ("organization", r.organization)]:
            if kind == "user" or ident:  # no team / org rows in this proxy's daily tables
                _add(logged[(kind, ident, r.start.date())], r, money(r.spend))
        if r.end_user:
            _add(logged[("end_user", r.end_user, r.start.date())], r, money(r.spend))
        for tag in r.tags:  # a repeated tag counts every time, as the proxy counts it
            _add(logged[("tag", tag, r.start.date())], r, money(r.spend))
        for tag in set(r.tags):  # the allocated split is over distinct tags
            logged[("tag", tag, r.start.date())]["allocated"] += _allocated(r, tag)
    recorded: dict[tuple, dict] = defaultdict(lambda: defaultdict(Decimal))
    for table, rows in daily_rows(requests).items():
        kind, column = next((k, c) for k, (t, c) in DAILY_TABLES.items() if t == table)
        for row in rows:
            side = recorded[(kind, row[column] or None, date.fromisoformat(row["date"]))]
            side["spend"] += money(row["spend"])
            side["requests"] += row["api_requests"]
            side["failed"] += row["failed_requests"]
            side["prompt"] += row["prompt_tokens"]
    fanned_out = {
        ("tag", tag, r.start.date())
        for r in requests
        if len(r.tags) > 1 and is_logged(r) and r is not flying
        for tag in r.tags
    }
    lost_entities = {(kind, ident, lost.start.date()) for kind, ident in lost.entities()}
    expected = {}
    for grain in logged.keys() | recorded.keys():
        kind, ident, day = grain
        log, daily = logged.get(grain, {}), recorded.get(grain, {})
        equal = all(log.get(m, 0) == daily.get(m, 0) for m in ("spend", "requests", "failed"))
        if equal and grain in fanned_out and log.get("allocated") != log.get("spend"):
            cls = "tag_fan_out"
        elif equal:
            cls = "match"
        elif day <= KEPT_FROM.date():
            cls = "spend_log_retention"
        elif day == DISABLED[0].date():
            cls = "spend_logs_disabled"
        elif day == flying.start.date():
            cls = "in_flight"
        elif (kind, ident, day) == ("end_user", RESET_END_USER, RESET_DAY):
            cls = "counter_reset"
        elif grain in lost_entities:
            cls = "lost_batch"
        elif (kind, ident, day) == ("team", UNEXPLAINED_TEAM, UNEXPLAINED_DAY):
            cls = "unexplained"
        else:
            raise AssertionError(f"the scenario leaves {grain} different for no designed reason")
        expected[grain] = {
            "class": cls,
            "log_spend": log.get("spend", Decimal(0)),
            "daily_spend": daily.get("spend", Decimal(0)),
            "log_requests": int(log.get("requests", 0)),
            "daily_requests": int(daily.get("requests", 0)),
            "log_failed": int(log.get("failed", 0)),
            "daily_failed": int(daily.get("failed", 0)),
            "log_prompt": int(log.get("prompt", 0)),
            "daily_prompt": int(daily.get("prompt", 0)),
        }
    return expected


def _add(side: dict, r: Request, spend: Decimal) -> None:
    side["spend"] += spend
    side["requests"] += 1
    side["failed"] += int(r.status == "failure")
    side["prompt"] += r.prompt


def _allocated(r: Request, tag: str) -> Decimal:
    """The request's spend split evenly over its distinct tags, the remainder (in 1e-10 USD
    units) to the first tag in alphabetical order."""
    units = int(money(r.spend) * Decimal(10**10))
    tags = sorted(set(r.tags))
    share, remainder = divmod(units, len(tags))
    return Decimal(share + (remainder if tag == tags[0] else 0)) / Decimal(10**10)


QUERY = (
    "select entity_type, entity_id, spend_date, reconciliation_class, log_spend_usd, "
    "daily_spend_usd, log_request_count, daily_request_count, log_failed_request_count, "
    "daily_failed_request_count, log_prompt_tokens, daily_prompt_tokens, "
    "spend_difference_usd, is_unexplained from {}"
)


def _as_expected(rows) -> dict[tuple, dict]:
    out = {}
    for kind, ident, day, cls, ls, ds, lr, dr, lf, df, lp, dp, diff, unexplained in rows:
        assert diff == ds - ls
        assert unexplained == (cls == "unexplained")
        out[(kind, ident, day)] = {
            "class": cls,
            "log_spend": ls,
            "daily_spend": ds,
            "log_requests": lr,
            "daily_requests": dr,
            "log_failed": lf,
            "daily_failed": df,
            "log_prompt": lp,
            "daily_prompt": dp,
        }
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The designed raw layer in DuckDB, the models built (dbt run: the data test fails by
    design, see test_unexplained_difference_fails_the_check)."""
    work = tmp_path_factory.mktemp("daily-reconciliation")
    path = work / "build.duckdb"
    requests = make_requests()
    write_layer(path, spend_log_rows(requests), daily_rows(requests))
    run_dbt(["run", "--select", SELECT], work, duckdb_env(path))
    return path, requests


def _classes(expected: dict[tuple, dict]) -> set[str]:
    return {row["class"] for row in expected.values()}


def test_every_difference_is_classified_on_duckdb(scenario):
    path, requests = scenario
    expected = expected_rows(requests)
    assert _classes(expected) == {
        "match",
        "tag_fan_out",
        "spend_log_retention",
        "spend_logs_disabled",
        "in_flight",
        "counter_reset",
        "lost_batch",
        "unexplained",
    }
    with duckdb.connect(str(path), read_only=True) as conn:
        actual = _as_expected(conn.execute(QUERY.format(f"main.{MART}")).fetchall())
    assert set(actual) == set(expected)
    wrong = {g: (actual[g], expected[g]) for g in expected if actual[g] != expected[g]}
    assert not wrong, f"{len(wrong)} rows differ, e.g. {next(iter(wrong.items()))}"
    # The proxy's rules: user rows of requests without a user, no team rows without a team.
    assert ("user", None, date(2028, 1, 5)) in actual
    assert not [g for g in actual if g[0] in ("team", "organization") and g[1] is None]


def test_unexplained_difference_fails_the_check(scenario, tmp_path):
    path, _ = scenario
    with pytest.raises(DbtFailedError, match="has_no_rows_fct_daily_spend_reconciliation"):
        run_dbt(["test", "--select", MART], tmp_path, duckdb_env(path))


def test_the_check_passes_without_unexplained_differences(tmp_path):
    requests = make_requests()
    daily = daily_rows(requests, unexplained=False)
    path = tmp_path / "build.duckdb"
    write_layer(path, spend_log_rows(requests), daily)
    output = run_dbt(["build", "--select", SELECT], tmp_path, duckdb_env(path))
    assert "has_no_rows_fct_daily_spend_reconciliation" in output
    with duckdb.connect(str(path), read_only=True) as conn:
        counts = dict(
            conn.execute(
                f"select reconciliation_class, count(*) from main.{MART} group by 1"
            ).fetchall()
        )
    assert "unexplained" not in counts
    assert counts["lost_batch"] > 0
    assert counts["match"] > 0


def test_older_proxy_without_daily_tables_compares_nothing(tmp_path):
    """No daily tables at all (older proxies): the mart is empty and the build green."""
    requests = make_requests()
    path = tmp_path / "build.duckdb"
    write_layer(path, spend_log_rows(requests), {})
    run_dbt(["build", "--select", SELECT], tmp_path, duckdb_env(path))
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute(f"select count(*) from main.{MART}").fetchone() == (0,)


@pytest.fixture
def pg_schema(pg_server_url):
    schema = f"spendwh_daily_{uuid.uuid4().hex[:8]}"
    yield schema
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for suffix in ("", "_raw", "_staging", "_intermediate"):
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema + suffix))
            )


def test_postgres_gives_the_same_classified_rows(scenario, pg_server_url, pg_schema, tmp_path):
    path, requests = scenario
    load_raw_to_postgres(path, pg_server_url, pg_schema + "_raw")
    env = _postgres_env(pg_server_url, pg_schema, pg_schema + "_raw")
    run_dbt(["run", "--select", SELECT], tmp_path, env)
    with psycopg.connect(pg_server_url) as conn:
        actual = _as_expected(conn.execute(QUERY.format(f"{pg_schema}.{MART}")).fetchall())
    expected = expected_rows(requests)
    assert {g: r["class"] for g, r in actual.items()} == {
        g: r["class"] for g, r in expected.items()
    }
    assert actual == expected
