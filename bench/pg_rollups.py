"""The rollups a user runs today without this project: plain SQL on the proxy's own tables.

Each query computes what one mart holds, at the same grain, straight from the proxy tables
(``"<prefix>SpendLogs"`` and friends), the way an analyst would write it against the live
database: no lake, no snapshots, no incremental state. Money is summed as ``numeric`` (the marts
are exact too), latency percentiles use ``percentile_cont`` like the marts.

- ``spend_daily``: ``fct_spend_daily`` (day x key x team x organization x user x end user x
  model group x provider: requests, failures, cache hits, spend, tokens, latency p50/p95, TTFT);
- ``spend_by_tag_daily``: ``fct_spend_by_tag_daily`` (spend split evenly over a request's
  distinct tags, untagged requests under a NULL tag);
- ``errors_daily``: ``fct_errors_daily`` (failures per day, model group, provider, exception and
  status, with the error rate against that day's requests);
- ``budget_periods``: ``fct_budget_periods`` for keys, teams, internal users and end users
  (period from ``budget_duration`` with the upstream alignment, spend in the period, limits, and
  the time each limit was first crossed by cumulative spend).
"""

from __future__ import annotations

from dagster_project.lib.sql import quote_ident, table_name


def _t(prefix: str, name: str) -> str:
    return quote_ident(table_name(prefix, name))


SPEND_DAILY = """
SELECT
    "startTime"::date AS spend_date,
    api_key,
    team_id,
    coalesce(nullif(organization_id, ''), metadata ->> 'user_api_key_org_id') AS organization_id,
    "user" AS user_id,
    end_user,
    model_group,
    custom_llm_provider AS provider,
    count(*) AS request_count,
    count(*) FILTER (WHERE status = 'failure') AS failed_request_count,
    count(*) FILTER (WHERE cache_hit = 'True') AS cache_hit_count,
    sum(spend::numeric) AS spend_usd,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(total_tokens) AS total_tokens,
    percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM "endTime" - "startTime") * 1000) AS latency_p50_ms,
    percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM "endTime" - "startTime") * 1000) AS latency_p95_ms,
    percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM "completionStartTime" - "startTime") * 1000)
        AS ttft_p50_ms,
    percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM "completionStartTime" - "startTime") * 1000)
        AS ttft_p95_ms
FROM {spend_logs}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""

SPEND_BY_TAG_DAILY = """
WITH tags AS (
    SELECT request_id, array_agg(DISTINCT tag) AS tags
    FROM {spend_logs},
         jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(request_tags) = 'array' THEN request_tags
                  ELSE '[]'::jsonb END) AS tag
    WHERE tag <> ''
    GROUP BY request_id
),
exploded AS (
    SELECT
        s."startTime"::date AS spend_date,
        s.api_key, s.team_id, s."user" AS user_id, s.end_user, s.model_group,
        s.custom_llm_provider AS provider,
        t.tag,
        coalesce(cardinality(tags.tags), 1) AS tag_count,
        s.spend::numeric AS spend,
        s.total_tokens
    FROM {spend_logs} AS s
    LEFT JOIN tags USING (request_id)
    LEFT JOIN LATERAL unnest(tags.tags) AS t(tag) ON true
)
SELECT
    spend_date, api_key, team_id, user_id, end_user, model_group, provider, tag,
    count(*) AS request_count,
    sum(spend / tag_count) AS allocated_spend_usd,
    sum(total_tokens::numeric / tag_count) AS allocated_total_tokens
FROM exploded
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""

ERRORS_DAILY = """
WITH failures AS (
    SELECT
        "startTime"::date AS error_date,
        model_group,
        coalesce(nullif(split_part(litellm_model_name, '/', 1), litellm_model_name), '')
            AS provider,
        exception_type,
        status_code,
        count(*) AS failure_count
    FROM {error_logs}
    GROUP BY 1, 2, 3, 4, 5
),
requests AS (
    SELECT "startTime"::date AS error_date, model_group, count(*) AS request_count
    FROM {spend_logs}
    GROUP BY 1, 2
)
SELECT
    failures.*,
    requests.request_count,
    failures.failure_count::numeric / nullif(requests.request_count, 0) AS error_rate
FROM failures
LEFT JOIN requests USING (error_date, model_group)
"""

BUDGET_PERIODS = """
WITH limits AS (
    SELECT 'key' AS entity_kind, k.token AS entity_id,
           coalesce(k.max_budget, b.max_budget) AS max_budget, b.soft_budget,
           coalesce(k.budget_duration, b.budget_duration) AS budget_duration
    FROM {keys} AS k LEFT JOIN {budgets} AS b USING (budget_id)
    UNION ALL
    SELECT 'team', team_id, max_budget, soft_budget, budget_duration FROM {teams}
    UNION ALL
    SELECT 'user', user_id, max_budget, NULL, budget_duration FROM {users}
    UNION ALL
    SELECT 'end_user', e.user_id, b.max_budget, b.soft_budget, b.budget_duration
    FROM {end_users} AS e JOIN {budgets} AS b USING (budget_id)
),
requests AS (
    SELECT 'key' AS entity_kind, api_key AS entity_id, "startTime", spend FROM {spend_logs}
    UNION ALL SELECT 'team', team_id, "startTime", spend FROM {spend_logs}
    UNION ALL SELECT 'user', "user", "startTime", spend FROM {spend_logs}
    UNION ALL SELECT 'end_user', end_user, "startTime", spend FROM {spend_logs}
),
periodized AS (
    SELECT
        l.entity_kind, l.entity_id, l.max_budget, l.soft_budget, l.budget_duration,
        r."startTime", r.spend::numeric AS spend,
        CASE
            WHEN l.budget_duration IS NULL THEN NULL  -- one open-ended period
            WHEN l.budget_duration ~ '^[0-9]+h$' THEN
                date_trunc('day', r."startTime") + make_interval(hours =>
                    (extract(hour FROM r."startTime")::int
                     / rtrim(l.budget_duration, 'h')::int)
                    * rtrim(l.budget_duration, 'h')::int)
            WHEN l.budget_duration = '7d' THEN date_trunc('week', r."startTime")
            WHEN l.budget_duration ~ '^[0-9]+d$' AND rtrim(l.budget_duration, 'd')::int < 28
                THEN date_trunc('day', r."startTime")
            ELSE date_trunc('month', r."startTime")
        END AS period_start
    FROM requests AS r
    JOIN limits AS l USING (entity_kind, entity_id)
),
running AS (
    SELECT *,
        sum(spend) OVER (
            PARTITION BY entity_kind, entity_id, period_start
            ORDER BY "startTime" ROWS UNBOUNDED PRECEDING) AS cumulative_spend
    FROM periodized
)
SELECT
    entity_kind, entity_id, budget_duration, period_start,
    count(*) AS request_count,
    sum(spend) AS period_spend_usd,
    max(max_budget) AS max_budget,
    max(soft_budget) AS soft_budget,
    100 * sum(spend) / nullif(max(max_budget), 0) AS pct_of_max_budget,
    min("startTime") FILTER (WHERE cumulative_spend > max_budget) AS max_budget_crossed_at,
    min("startTime") FILTER (WHERE cumulative_spend > soft_budget) AS soft_budget_crossed_at
FROM running
GROUP BY 1, 2, 3, 4
"""

QUERIES = {
    "spend_daily": SPEND_DAILY,
    "spend_by_tag_daily": SPEND_BY_TAG_DAILY,
    "errors_daily": ERRORS_DAILY,
    "budget_periods": BUDGET_PERIODS,
}


def rollup_queries(prefix: str) -> dict[str, str]:
    """The rollup queries for proxy tables named ``<prefix><Name>``, by mart they stand for."""
    tables = {
        "spend_logs": _t(prefix, "SpendLogs"),
        "error_logs": _t(prefix, "ErrorLogs"),
        "keys": _t(prefix, "VerificationToken"),
        "budgets": _t(prefix, "BudgetTable"),
        "teams": _t(prefix, "TeamTable"),
        "users": _t(prefix, "UserTable"),
        "end_users": _t(prefix, "EndUserTable"),
    }
    return {name: sql.format(**tables) for name, sql in QUERIES.items()}
