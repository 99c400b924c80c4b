"""Integration tests: simulate into real proxy databases (both prefixes, latest and older schema)
and check what was written."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import psycopg
import pytest

from dagster_project.cli import main as spendwh
from dagster_project.lib.migrations import (
    DELETED_KEYS_TABLES,
    SPEND_LOGS_ORGANIZATION_ID,
    apply_migrations,
)
from dagster_project.lib.postgres import create_database, drop_database
from dagster_project.settings import DEFAULT_TABLE_PREFIX, UPSTREAM_TABLE_PREFIX
from dagster_project.simulator import PopulationSpec, simulate
from dagster_project.simulator.catalog import ADMIN_USER_ID, MASTER_KEY

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 26, 18, 0)
OLD_SCHEMA = "20251101000000"
BOTH_PREFIXES = [
    pytest.param(DEFAULT_TABLE_PREFIX, id="dheera"),
    pytest.param(UPSTREAM_TABLE_PREFIX, id="litellm"),
]
SMALL = PopulationSpec(organizations=3, teams=6, users=15, keys=24, end_users=20)


def scalar(src, sql: str, *params):
    with src.connect() as conn:
        return conn.execute(sql, params).fetchone()[0]


def rows(src, sql: str, *params):
    with src.connect() as conn:
        return conn.execute(sql, params).fetchall()


@dataclass(frozen=True)
class Db:
    """A proxy database built for this module (same interface as conftest's ``SourceDb``)."""

    url: str
    prefix: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url)

    def table(self, name: str) -> str:
        return '"' + self.prefix + name + '"'


@pytest.fixture(scope="module", params=BOTH_PREFIXES)
def simulated(request, pg_server_url):
    """Three days of traffic in a fresh latest-schema database per prefix, shared by the
    read-only checks below."""
    name = f"spendwh_sim_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, name)
    try:
        apply_migrations(url, request.param)
        src = Db(url, request.param)
        result = simulate(
            src.url, src.prefix, seed=3, end=END, days=3, requests_per_day=3000, spec=SMALL
        )
        yield src, result
    finally:
        drop_database(pg_server_url, name)


def test_counts_match_the_result(simulated):
    src, result = simulated
    logs = src.table("SpendLogs")
    assert result.spend_logs > 8000
    assert scalar(src, f"SELECT count(*) FROM {logs}") == result.spend_logs
    assert scalar(src, f"SELECT count(*) FROM {src.table('ErrorLogs')}") == result.failures
    assert scalar(src, f"SELECT count(*) FROM {logs} WHERE status = 'failure'") == result.failures
    hits = scalar(src, f"SELECT count(*) FROM {logs} WHERE cache_hit = 'True'")
    assert hits == result.cache_hits > 0
    pop = result.population
    assert scalar(src, f"SELECT count(*) FROM {src.table('VerificationToken')}") == len(
        pop.live_keys
    )
    # deleted keys, and the old row of each key rotation
    assert scalar(src, f"SELECT count(*) FROM {src.table('DeletedVerificationToken')}") == len(
        pop.deleted_keys
    ) + len(pop.rotations)
    assert scalar(src, f"SELECT count(*) FROM {src.table('OrganizationTable')}") == len(
        pop.organizations
    )
    assert scalar(src, f"SELECT count(*) FROM {src.table('BudgetTable')}") == len(pop.budgets)
    assert scalar(src, f"SELECT count(*) FROM {src.table('TeamMembership')}") == len(
        pop.team_members
    )
    assert scalar(src, f"SELECT count(*) FROM {src.table('ProxyModelTable')}") > 0


def test_references_resolve(simulated):
    src, _ = simulated
    logs = src.table("SpendLogs")
    unresolved_keys = rows(
        src,
        f"SELECT DISTINCT l.api_key FROM {logs} l "
        f"LEFT JOIN {src.table('VerificationToken')} k ON k.token = l.api_key "
        f"LEFT JOIN {src.table('DeletedVerificationToken')} d ON d.token = l.api_key "
        "WHERE k.token IS NULL AND d.token IS NULL",
    )
    assert {r[0] for r in unresolved_keys} == {"", MASTER_KEY}
    for column, table, key in [
        ('"user"', "UserTable", "user_id"),
        ("team_id", "TeamTable", "team_id"),
        ("end_user", "EndUserTable", "user_id"),
        ("organization_id", "OrganizationTable", "organization_id"),
    ]:
        missing = scalar(
            src,
            f"SELECT count(*) FROM {logs} l WHERE l.{column} <> '' AND NOT EXISTS "
            f"(SELECT 1 FROM {src.table(table)} t WHERE t.{key} = l.{column})",
        )
        assert missing == 0, column
        assert scalar(src, f"SELECT count(*) FROM {logs} WHERE {column} = ''") > 0, column
    assert scalar(src, f"SELECT count(*) FROM {logs} WHERE team_id IS NULL") == 0
    owners = {r[0] for r in rows(src, f"SELECT DISTINCT \"user\" FROM {logs} WHERE api_key = %s",
                                 MASTER_KEY)}  # fmt: skip
    assert owners == {ADMIN_USER_ID}
    deleted_history = scalar(
        src,
        f"SELECT count(*) FROM {logs} l JOIN {src.table('DeletedVerificationToken')} d "
        "ON d.token = l.api_key",
    )
    assert deleted_history > 0, "deleted keys keep their spend-log history"


def test_failures_have_error_log_rows(simulated):
    src, _ = simulated
    failures = rows(
        src,
        f'SELECT "startTime", model_group, spend, total_tokens, "endTime" = "startTime" '
        f"FROM {src.table('SpendLogs')} WHERE status = 'failure'",
    )
    assert failures
    assert all(r[2] == 0 and r[3] == 0 and r[4] for r in failures)
    errors = rows(
        src, f'SELECT "startTime", model_group, status_code FROM {src.table("ErrorLogs")}'
    )
    assert Counter((r[0], r[1]) for r in failures) == Counter((r[0], r[1]) for r in errors)
    assert all(r[2].isdigit() for r in errors)


def test_rows_are_written_late_and_out_of_order(simulated):
    src, _ = simulated
    logs = src.table("SpendLogs")
    assert scalar(src, f'SELECT count(*) FROM {logs} WHERE created_at < "endTime"') == 0
    assert scalar(src, f"SELECT count(*) FROM {logs} WHERE created_at <> updated_at") == 0
    # rows whose startTime is older than a row already inserted earlier
    out_of_order = scalar(
        src,
        f'SELECT count(*) FROM (SELECT "startTime", max("startTime") OVER (ORDER BY created_at, '
        f"request_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS seen FROM {logs}) t "
        'WHERE "startTime" < seen',
    )
    assert out_of_order > 100
    max_lag = scalar(src, f'SELECT max(extract(epoch FROM created_at - "endTime")) FROM {logs}')
    assert max_lag > 15
    batched = scalar(
        src,
        f"SELECT count(*) FROM (SELECT created_at FROM {logs} GROUP BY 1 HAVING count(*) > 2) t",
    )
    assert batched > 10, "one flush writes several rows with one created_at"


def test_json_and_empty_string_shapes(simulated):
    src, _ = simulated
    logs = src.table("SpendLogs")
    kinds = rows(src, f"SELECT DISTINCT jsonb_typeof(request_tags) FROM {logs}")
    assert kinds == [("array",)]
    assert scalar(src, f"SELECT count(*) FROM {logs} WHERE request_tags = '[]'") > 0
    assert scalar(src, f"SELECT count(*) FROM {logs} WHERE jsonb_array_length(request_tags) > 1")
    alias_ok = scalar(
        src,
        f"SELECT bool_and(l.metadata->>'user_api_key_alias' = k.key_alias) FROM {logs} l "
        f"JOIN {src.table('VerificationToken')} k ON k.token = l.api_key",
    )
    assert alias_ok
    assert scalar(
        src,
        f"SELECT count(*) FROM {logs} WHERE status = 'failure' "
        "AND metadata->'error_information'->>'error_class' IS NULL",
    ) == 0  # fmt: skip
    assert scalar(
        src,
        f"SELECT count(*) FROM {logs} WHERE cache_hit = 'True' "
        "AND (spend <> 0 OR request_id NOT LIKE '%%\\_cache\\_hit%%')",
    ) == 0  # fmt: skip


def test_budgets_are_crossed_by_some_and_counters_are_set(simulated):
    src, result = simulated
    pop = result.population
    keys = {
        r[0]: r[1:]
        for r in rows(
            src,
            f"SELECT k.token, k.spend, k.max_budget, b.soft_budget FROM "
            f"{src.table('VerificationToken')} k LEFT JOIN {src.table('BudgetTable')} b "
            "USING (budget_id)",
        )
    }
    by_token = {k.token: k for k in pop.live_keys}
    for token, (spend, max_budget, soft_budget) in keys.items():
        key = by_token[token]
        assert spend == pytest.approx(key.spend)
        assert max_budget == key.max_budget
        assert soft_budget == key.soft_budget
    over = [k for k in pop.live_keys if k.max_budget is not None and k.period_spend > k.max_budget]
    never = [k for k in pop.live_keys if k.max_budget is not None and k.period_spend < k.max_budget]
    assert over
    assert never
    teams_over_soft = [
        t for t in pop.teams if t.soft_budget is not None and t.period_spend > t.soft_budget
    ]
    assert teams_over_soft or any(t.profile == "soft" for t in pop.teams)
    assert pop.drifted, "a few counters drift from the logs"
    # the logs agree with the population's period spend for keys without a window (under every
    # hash a rotated key had: the live row's counter follows the key across rotations)
    for i, key in enumerate(pop.keys):
        if key.deleted_at is None and key.budget_duration is None:
            logged = scalar(
                src,
                f"SELECT coalesce(sum(spend), 0) FROM {src.table('SpendLogs')} "
                "WHERE api_key = ANY(%s)",
                list(pop.key_hashes(i)),
            )
            assert logged == pytest.approx(key.period_spend)


def test_tag_rows_and_a_crossed_tag_budget(simulated):
    """TagTable rows for some carried tags (one without budget); a budgeted tag's full-cost spend,
    summed from the logs per day of its 1d budget, goes over its max budget."""
    src, result = simulated
    pop = result.population
    tags = {
        r[0]: r[1:]
        for r in rows(
            src,
            f"SELECT t.tag_name, t.budget_id, t.spend, b.max_budget, b.budget_duration FROM "
            f"{src.table('TagTable')} t LEFT JOIN {src.table('BudgetTable')} b USING (budget_id)",
        )
    }
    assert set(tags) == {t.tag_name for t in pop.tags}
    assert any(budget_id is None for budget_id, *_ in tags.values())
    budget_id, spend, max_budget, duration = tags["prod"]
    assert budget_id is not None
    assert duration == "1d"
    assert spend == pytest.approx(next(t.spend for t in pop.tags if t.tag_name == "prod"))
    day_max = scalar(
        src,
        f"SELECT max(s) FROM (SELECT date_trunc('day', \"startTime\"), sum(spend) AS s "
        f"FROM {src.table('SpendLogs')} WHERE request_tags ? 'prod' GROUP BY 1) d",
    )
    assert day_max > max_budget


def test_project_rows_key_links_and_a_crossed_project_budget(simulated):
    """ProjectTable rows (one without budget), live and deleted keys carrying their project_id;
    the 1d-budgeted project's spend, summed from its keys' logs per day, goes over its max."""
    src, result = simulated
    pop = result.population
    projects = {
        r[0]: r[1:]
        for r in rows(
            src,
            f"SELECT p.project_id, p.project_alias, p.budget_id, p.spend, b.max_budget, "
            f"b.budget_duration FROM {src.table('ProjectTable')} p "
            f"LEFT JOIN {src.table('BudgetTable')} b USING (budget_id)",
        )
    }
    assert set(projects) == {p.project_id for p in pop.projects}
    assert any(budget_id is None for _, budget_id, *_ in projects.values())
    key_projects = dict(
        rows(src, f"SELECT token, project_id FROM {src.table('VerificationToken')}")
        + rows(src, f"SELECT token, project_id FROM {src.table('DeletedVerificationToken')}")
    )
    assert key_projects == {
        token: k.project_id for i, k in enumerate(pop.keys) for token in pop.key_hashes(i)
    }
    over = pop.projects[0]
    alias, _, spend, max_budget, duration = projects[over.project_id]
    assert (alias, duration) == ("checkout-assistant", "1d")
    assert spend == pytest.approx(over.spend)
    tokens = [
        token
        for i, k in enumerate(pop.keys)
        if k.project_id == over.project_id
        for token in pop.key_hashes(i)
    ]
    day_max = scalar(
        src,
        f"SELECT max(s) FROM (SELECT date_trunc('day', \"startTime\"), sum(spend) AS s "
        f"FROM {src.table('SpendLogs')} WHERE api_key = ANY(%s) GROUP BY 1) d",
        tokens,
    )
    assert day_max > max_budget


def test_key_rotations_are_written_like_the_proxy_writes_them(simulated):
    """Each rotated key: the live row under its new hash (rotation count and time set), the old
    row copied into DeletedVerificationToken under the old hash; its spend logs carry each hash
    exactly while it was current; AuditLog and DeprecatedVerificationToken rows for exactly the
    rotations with that evidence; a key rotated twice (old1 -> old2 -> live)."""
    src, result = simulated
    pop = result.population
    assert {r.evidence for r in pop.rotations} == {"audit_log", "deprecated_token", "none"}
    rotated = sorted({r.key_index for r in pop.rotations})
    assert any(len(pop.rotations_of(i)) == 2 for i in rotated), "a chain of two rotations"
    assert all(pop.keys[i].deleted_at is None for i in rotated)
    live = {
        r[0]: r[1:]
        for r in rows(
            src,
            "SELECT token, created_at, key_alias, user_id, team_id, rotation_count, "
            f"last_rotation_at FROM {src.table('VerificationToken')}",
        )
    }
    deleted = {
        r[0]: r[1:]
        for r in rows(
            src,
            "SELECT token, created_at, key_alias, user_id, team_id, rotation_count, deleted_at "
            f"FROM {src.table('DeletedVerificationToken')}",
        )
    }
    logged = 0
    for i in rotated:
        key, rotations, hashes = pop.keys[i], pop.rotations_of(i), pop.key_hashes(i)
        created, alias, user_id, team_id, count, last = live[key.token]
        assert (created, alias, user_id, team_id) == (
            key.created_at,
            key.key_alias,
            key.user_id,
            key.team_id,
        )
        assert (count, last) == (len(rotations), rotations[-1].rotated_at)
        assert not set(hashes[:-1]) & set(live), "old hashes leave VerificationToken"
        for r, new in zip(rotations, hashes[1:], strict=True):
            assert r.new_token == new
            assert deleted[r.old_token] == (*live[key.token][:4], r.number - 1, r.rotated_at)
        # spend logs: hash j from rotation j (or forever before) until rotation j + 1
        bounds = [datetime.min, *(r.rotated_at for r in rotations), datetime.max]
        by_hash = {
            r[0]: r[1:]
            for r in rows(
                src,
                f'SELECT api_key, min("startTime"), max("startTime"), count(*), '
                "bool_and(metadata->>'user_api_key' = api_key) "
                f"FROM {src.table('SpendLogs')} WHERE api_key = ANY(%s) GROUP BY 1",
                list(hashes),
            )
        }
        for j, token in enumerate(hashes):
            if token in by_hash:
                first, latest, n, meta_ok = by_hash[token]
                assert bounds[j] <= first, (token, j)
                assert latest < bounds[j + 1], (token, j)
                assert meta_ok
                logged += n if j < len(hashes) - 1 else 0
    assert logged > 0, "some requests went out under an old hash"

    audit = rows(
        src,
        "SELECT object_id, table_name, updated_at, before_value->>'token', "
        f"updated_values->>'token' FROM {src.table('AuditLog')} WHERE action = 'rotated'",
    )
    assert sorted(audit) == sorted(
        (r.old_token, f"{src.prefix}VerificationToken", r.rotated_at, r.old_token, r.new_token)
        for r in pop.rotations
        if r.evidence == "audit_log"
    )
    deprecated = rows(
        src,
        "SELECT token, active_token_id, revoke_at, created_at "
        f"FROM {src.table('DeprecatedVerificationToken')}",
    )
    assert sorted(deprecated) == sorted(
        (r.old_token, r.new_token, r.revoke_at, r.rotated_at)
        for r in pop.rotations
        if r.evidence == "deprecated_token"
    )
    assert all(revoke_at > result.end for _, _, revoke_at, _ in deprecated)
    # the daily tables book each request under the hash it carried, like the spend logs
    olds = [r.old_token for r in pop.rotations]
    daily = dict(
        rows(
            src,
            f"SELECT api_key, sum(spend) FROM {src.table('DailyUserSpend')} "
            "WHERE api_key = ANY(%s) GROUP BY 1",
            olds,
        )
    )
    logs = dict(
        rows(
            src,
            f"SELECT api_key, sum(spend) FROM {src.table('SpendLogs')} "
            "WHERE api_key = ANY(%s) GROUP BY 1",
            olds,
        )
    )
    assert daily.keys() == logs.keys()
    assert all(daily[t] == pytest.approx(logs[t]) for t in logs)


def test_older_schema_without_newer_columns(make_source):
    src = make_source(until=OLD_SCHEMA)
    assert OLD_SCHEMA < SPEND_LOGS_ORGANIZATION_ID < DELETED_KEYS_TABLES
    result = simulate(src.url, src.prefix, seed=4, end=END, days=1, requests_per_day=2000,
                      spec=SMALL)  # fmt: skip
    logs = src.table("SpendLogs")
    assert scalar(src, f"SELECT count(*) FROM {logs}") == result.spend_logs > 1000
    columns = {
        r[0]
        for r in rows(
            src,
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
            f"{src.prefix}SpendLogs",
        )
    }
    assert "created_at" not in columns
    assert "organization_id" not in columns
    assert scalar(src, "SELECT to_regclass(%s)", f'"{src.prefix}DeletedVerificationToken"') is None
    assert scalar(src, "SELECT to_regclass(%s)", f'"{src.prefix}ProjectTable"') is None
    # key rotations: no deleted copy and no deprecated row before those tables existed; the
    # AuditLog (in the baseline) has the audit evidence, and the audited limit changes
    assert (
        scalar(src, "SELECT to_regclass(%s)", f'"{src.prefix}DeprecatedVerificationToken"') is None
    )
    audit = dict(rows(src, f"SELECT action, count(*) FROM {src.table('AuditLog')} GROUP BY 1"))
    assert audit == {
        "rotated": sum(r.evidence == "audit_log" for r in result.population.rotations),
        "updated": sum(c.audited for c in result.population.limit_changes),
    }
    assert scalar(src, f"SELECT count(*) FROM {src.table('VerificationToken')}") == len(
        result.population.live_keys
    )


def test_cli_is_deterministic_and_refuses_a_second_identical_run(make_source, capsys):
    first, second = make_source(), make_source()
    args = ["simulate", "--seed", "9", "--end", "2026-11-26T18:00:00", "--days", "0.5"]
    for src in (first, second):
        assert spendwh([*args, "--database-url", src.url, "--prefix", src.prefix]) == 0
    out = capsys.readouterr()
    assert "spend logs" in out.out
    assert "rows/s" in out.err
    digest = (
        'SELECT md5(string_agg(request_id || spend::text || "startTime"::text || created_at::text,'
        " ',' ORDER BY request_id)) FROM " + first.table("SpendLogs")
    )
    assert scalar(first, digest) == scalar(second, digest)
    tokens = f"SELECT string_agg(token, ',' ORDER BY token) FROM {first.table('VerificationToken')}"
    assert scalar(first, tokens) == scalar(second, tokens)
    assert spendwh([*args, "--database-url", first.url, "--prefix", first.prefix]) == 2
    assert "already holds rows" in capsys.readouterr().err


def test_cli_init_schema_and_clear_errors(pg_server_url, capsys):
    name = f"spendwh_sim_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, name)
    try:
        assert spendwh(["simulate", "--database-url", url, "--days", "0.1"]) == 2
        assert "--init-schema" in capsys.readouterr().err
        code = spendwh(
            ["simulate", "--database-url", url, "--days", "0.1", "--init-schema", "--prefix",
             "LiteLLM_"]
        )  # fmt: skip
        assert code == 0
        assert scalar_url(url, 'SELECT count(*) FROM "LiteLLM_SpendLogs"') > 0
    finally:
        drop_database(pg_server_url, name)
    with pytest.raises(SystemExit):
        spendwh(["simulate", "--end", "yesterday"])
    assert "--end 'yesterday' is not an ISO timestamp" in capsys.readouterr().err


def scalar_url(url: str, sql: str):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_live_mode_appends_with_database_timestamps(make_source):
    src = make_source()
    result = simulate(
        src.url,
        src.prefix,
        seed=5,
        days=0.05,
        requests_per_day=400_000,
        spec=SMALL,
        live=True,
        live_duration_s=7,
        flush_interval_s=1,
    )
    assert result.live_spend_logs > 0
    logs = src.table("SpendLogs")
    total = scalar(src, f"SELECT count(*) FROM {logs}")
    assert total == result.spend_logs + result.live_spend_logs
    live_rows = scalar(src, f"SELECT count(*) FROM {logs} WHERE created_at > %s", result.end)
    assert live_rows >= result.live_spend_logs
    counters = scalar(src, f"SELECT sum(spend) FROM {src.table('VerificationToken')}")
    assert counters > sum(k.spend for k in result.population.live_keys)
    in_projects = [k.token for k in result.population.keys if k.project_id]
    live_project_spend = scalar(
        src,
        f"SELECT coalesce(sum(spend), 0) FROM {logs} WHERE created_at > %s AND api_key = ANY(%s)",
        result.end,
        in_projects,
    )
    project_counters = scalar(src, f"SELECT sum(spend) FROM {src.table('ProjectTable')}")
    assert project_counters == pytest.approx(
        sum(p.spend for p in result.population.projects) + live_project_spend
    )
