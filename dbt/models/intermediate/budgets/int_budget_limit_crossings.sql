-- A table: int_budget_periods_bounded and fct_budget_threshold_crossings read it.
{{ config(materialized='table') }}

-- For every budget period and limit (soft budget, max budget, each var alert_threshold_pcts
-- percentage of the max budget): the request that took the period's cumulative spend to the
-- limit or beyond (requests ordered by startTime, then request_id), when it happened. The hour
-- of the crossing comes from int_budget_spend_hourly (the first hour whose running spend reaches
-- the limit; spend is never negative); within it, the first minute whose running spend reaches
-- it; only that minute's requests are then accumulated one by one, starting from the spend
-- before the minute. Each request is measured against the limits in force when it was made
-- (int_budget_limit_versions): a version's search covers only the hours, minutes and requests
-- inside its validity, and a limit crossed under several versions keeps the earliest crossing.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

budget_hours as (

    select * from {{ ref('int_budget_spend_hourly') }}

),

entity_requests as (

    select * from {{ ref('int_entity_requests') }}

),

limit_versions as (

    select * from {{ ref('int_budget_limit_versions') }}

),

versioned_budgets as (

    select
        limit_versions.entity_budget_id,
        limit_versions.soft_budget_usd,
        limit_versions.max_budget_usd,
        limit_versions.valid_from,
        limit_versions.valid_to
    from limit_versions
    inner join valid_budgets
        on limit_versions.entity_budget_id = valid_budgets.entity_budget_id

),

limits as (

    {{ budget_limit_rows('versioned_budgets', extra_columns=['valid_from', 'valid_to']) }}

),

reached_hours as (

    select
        limits.entity_budget_id,
        limits.crossing_type,
        limits.threshold_pct,
        limits.threshold_usd,
        limits.valid_from,
        limits.valid_to,
        budget_hours.period_start,
        budget_hours.period_start_local,
        budget_hours.hour_local,
        budget_hours.spend_before_hour_usd,
        row_number() over (
            partition by
                limits.entity_budget_id,
                limits.crossing_type,
                limits.threshold_pct,
                limits.valid_from,
                budget_hours.period_start_local
            order by budget_hours.hour_local
        ) as hour_rank
    from limits
    inner join budget_hours
        on
            limits.entity_budget_id = budget_hours.entity_budget_id
            and limits.threshold_usd <= budget_hours.cumulative_period_spend_usd
            and (limits.valid_from is null or limits.valid_from <= budget_hours.last_request_at)
            and (limits.valid_to is null or limits.valid_to > budget_hours.first_request_at)

),

crossing_hours as (

    select
        reached_hours.*,
        valid_budgets.entity_type,
        valid_budgets.entity_id,
        valid_budgets.is_sub_hour,
        case
            when valid_budgets.is_sub_hour
                then {{ budget_period_end_local(
                    'reached_hours.period_start_local', 'valid_budgets.period_kind',
                    'valid_budgets.step_days', 'valid_budgets.step_seconds',
                ) }}
        end as period_end_local,
        row_number() over (
            order by
                reached_hours.entity_budget_id,
                reached_hours.crossing_type,
                reached_hours.threshold_pct,
                reached_hours.valid_from,
                reached_hours.period_start_local
        ) as crossing_number
    from reached_hours
    inner join valid_budgets
        on reached_hours.entity_budget_id = valid_budgets.entity_budget_id
    where reached_hours.hour_rank = 1

),

-- The requests of each crossing hour (within the period, for sub-hour budgets).
hour_requests as (

    select
        crossing_hours.crossing_number,
        entity_requests.request_id,
        entity_requests.spend_usd,
        entity_requests.started_at,
        date_trunc('minute', entity_requests.started_at) as started_minute
    from crossing_hours
    inner join entity_requests
        on
            crossing_hours.entity_type = entity_requests.entity_type
            and crossing_hours.entity_id = entity_requests.entity_id
            and crossing_hours.hour_local
            = date_trunc('hour', entity_requests.started_at_local)
    where
        not crossing_hours.is_sub_hour
        or (
            entity_requests.started_at_local >= crossing_hours.period_start_local
            and entity_requests.started_at_local < crossing_hours.period_end_local
        )

),

-- Their spend per minute, accumulated from the spend before the hour: the crossing minute is
-- the first whose running spend reaches the limit.
minute_spend as (

    select
        crossing_number,
        started_minute,
        sum(spend_usd) as minute_spend_usd,
        max(started_at) as minute_last_at
    from hour_requests
    group by crossing_number, started_minute

),

minute_running as (

    select
        crossing_number,
        started_minute,
        minute_spend_usd,
        minute_last_at,
        sum(minute_spend_usd) over (
            partition by crossing_number
            order by started_minute
            rows between unbounded preceding and current row
        ) as hour_spend_through_minute_usd
    from minute_spend

),

reached_minutes as (

    select
        minute_running.crossing_number,
        minute_running.started_minute,
        minute_running.minute_last_at,
        crossing_hours.threshold_usd,
        crossing_hours.valid_from,
        crossing_hours.spend_before_hour_usd
        + minute_running.hour_spend_through_minute_usd
        - minute_running.minute_spend_usd as spend_before_minute_usd,
        crossing_hours.spend_before_hour_usd
        + minute_running.hour_spend_through_minute_usd as spend_through_minute_usd
    from minute_running
    inner join crossing_hours
        on minute_running.crossing_number = crossing_hours.crossing_number

),

crossing_minutes as (

    select
        crossing_number,
        min(started_minute) as started_minute
    from reached_minutes
    where
        spend_through_minute_usd >= threshold_usd
        and (valid_from is null or minute_last_at >= valid_from)
    group by crossing_number

),

-- The requests of the crossing minute, accumulated one by one from the spend before it.
minute_requests as (

    select
        hour_requests.crossing_number,
        hour_requests.started_at,
        reached_minutes.spend_before_minute_usd + sum(hour_requests.spend_usd) over (
            partition by hour_requests.crossing_number
            order by hour_requests.started_at, hour_requests.request_id
            rows between unbounded preceding and current row
        ) as cumulative_period_spend_usd
    from crossing_minutes
    inner join reached_minutes
        on
            crossing_minutes.crossing_number = reached_minutes.crossing_number
            and crossing_minutes.started_minute = reached_minutes.started_minute
    inner join hour_requests
        on
            crossing_minutes.crossing_number = hour_requests.crossing_number
            and crossing_minutes.started_minute = hour_requests.started_minute

),

-- Per limit version: its first request in force at or beyond the limit.
version_crossings as (

    select
        crossing_hours.entity_budget_id,
        crossing_hours.crossing_type,
        crossing_hours.threshold_pct,
        crossing_hours.threshold_usd,
        crossing_hours.valid_from,
        crossing_hours.period_start,
        min(minute_requests.started_at) as crossed_at,
        min(minute_requests.cumulative_period_spend_usd) as period_spend_at_crossing_usd
    from minute_requests
    inner join crossing_hours
        on minute_requests.crossing_number = crossing_hours.crossing_number
    where
        minute_requests.cumulative_period_spend_usd >= crossing_hours.threshold_usd
        and (
            crossing_hours.valid_from is null
            or minute_requests.started_at >= crossing_hours.valid_from
        )
        and (
            crossing_hours.valid_to is null
            or minute_requests.started_at < crossing_hours.valid_to
        )
    group by
        crossing_hours.entity_budget_id,
        crossing_hours.crossing_type,
        crossing_hours.threshold_pct,
        crossing_hours.threshold_usd,
        crossing_hours.valid_from,
        crossing_hours.period_start

),

-- A limit crossed under several versions in one period: the earliest crossing counts.
crossings as (

    select
        *,
        row_number() over (
            partition by entity_budget_id, crossing_type, threshold_pct, period_start
            order by crossed_at asc, valid_from asc nulls first
        ) as crossing_rank
    from version_crossings

),

final as (

    select
        entity_budget_id,
        period_start,
        crossing_type,
        threshold_pct,
        cast(threshold_usd as numeric(38, 10)) as threshold_usd,
        cast(period_spend_at_crossing_usd as numeric(38, 10)) as period_spend_at_crossing_usd,
        crossed_at
    from crossings
    where crossing_rank = 1

)

select * from final
