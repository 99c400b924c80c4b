{{
    config(
        materialized='table' if target.type == 'spark' else 'incremental',
        incremental_strategy='delete+insert',
        unique_key=['entity_budget_id', 'period_start'],
        on_schema_change='append_new_columns',
        pre_hook="{{ budget_limit_crossings_reset() }}",
    )
}}
-- depends_on: {{ ref('int_spend_logs_attributed') }}
-- depends_on: {{ ref('int_request_tag_lists') }}
-- depends_on: {{ ref('int_budget_holders_unioned') }}

-- For every budget period and limit (soft budget, max budget, each var alert_threshold_pcts
-- percentage of the max budget): the request that took the period's cumulative spend to the
-- limit or beyond (requests ordered by startTime, then request_id), when it happened. The hour
-- of the crossing comes from int_budget_spend_hourly (the first hour whose running spend reaches
-- the limit; spend is never negative); within it, the first minute whose running spend reaches
-- it; only that minute's requests are then accumulated one by one, starting from the spend
-- before the minute. Each request is measured against the limits in force when it was made
-- (int_budget_limit_versions): a version's search covers only the hours, minutes and requests
-- inside its validity, and a limit crossed under several versions keeps the earliest crossing.
-- Incremental (a table on Spark) by budget period: each run re-builds the periods with hours that
-- hold requests extracted after the last build (late ones of any age) or lie in the last var
-- incremental_rebuild_days days, and every period of a budget without stored crossings. Spend
-- only grows, so a period's crossings only move earlier or appear: the re-built periods replace
-- theirs (delete+insert), the others stand. When a budget's alignment, limits or first period
-- changed (budget_crossing_fingerprints), the pre-hook deletes its crossings and the run
-- re-builds all its periods; when attribution, the time zone or the thresholds changed
-- (budget_limit_crossings_inputs), it deletes all of them. So an incremental build equals a
-- full one.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

budget_hours as (

    select * from {{ ref('int_budget_spend_hourly') }}

),

limit_versions as (

    select * from {{ ref('int_budget_limit_versions') }}

),

budget_fingerprints as (

    {{ budget_crossing_fingerprints() | indent(4) }}

),

{% if is_incremental() %}

{#- Columns added after a warehouse was first built: the pre-hook emptied such a table. -#}
{%- set built = column_names(this) %}

-- The periods to re-build: those with hours holding requests extracted after the last build, or
-- in the last var incremental_rebuild_days days (whose attribution the entity buckets re-build),
-- and every period of a budget without stored crossings (new, never crossed, or emptied by the
-- pre-hook).
rebuilt_periods as (

    select distinct
        budget_hours.entity_budget_id,
        budget_hours.period_start
    from budget_hours
    where
        {%- if 'hours_extracted_at' in built %}
        budget_hours.last_extracted_at > (
            select max(hours_extracted_at) as watermark from {{ this }}
        )
        or
        {%- endif %}
        cast(budget_hours.hour_local as date) >= (
            select {{ add_days(
                'max(cast(latest.hour_local as date))', '-' ~ var('incremental_rebuild_days')
            ) }}
            from budget_hours as latest
        )
        or not exists (
            select 1 as is_built
            from {{ this }} as built
            where built.entity_budget_id = budget_hours.entity_budget_id
        )

),

searched_hours as (

    select budget_hours.*
    from budget_hours
    inner join rebuilt_periods
        on
            budget_hours.entity_budget_id = rebuilt_periods.entity_budget_id
            and budget_hours.period_start = rebuilt_periods.period_start

),

{% else %}

searched_hours as (

    select * from budget_hours

),

{% endif %}

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
        searched_hours.period_start,
        searched_hours.period_start_local,
        searched_hours.hour_local,
        searched_hours.spend_before_hour_usd,
        row_number() over (
            partition by
                limits.entity_budget_id,
                limits.crossing_type,
                limits.threshold_pct,
                limits.valid_from,
                searched_hours.period_start_local
            order by searched_hours.hour_local
        ) as hour_rank
    from limits
    inner join searched_hours
        on
            limits.entity_budget_id = searched_hours.entity_budget_id
            and limits.threshold_usd <= searched_hours.cumulative_period_spend_usd
            and (limits.valid_from is null or limits.valid_from <= searched_hours.last_request_at)
            and (limits.valid_to is null or limits.valid_to > searched_hours.first_request_at)

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

{% if is_incremental() %}

-- The requests (int_entity_requests) of the crossing hours only, filtered before they fan out
-- to their entities.
entity_requests as (

    {{ entity_requests(
        "date_trunc('hour', started_at_local) in (select hour_local from crossing_hours)"
    ) | indent(4) }}

),

{% else %}

entity_requests as (

    select * from {{ ref('int_entity_requests') }}

),

{% endif %}

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
        crossings.entity_budget_id,
        crossings.period_start,
        crossings.crossing_type,
        crossings.threshold_pct,
        cast(crossings.threshold_usd as numeric(38, 10)) as threshold_usd,
        cast(crossings.period_spend_at_crossing_usd as numeric(38, 10))
            as period_spend_at_crossing_usd,
        crossings.crossed_at,
        (
            select max(all_hours.last_extracted_at) as watermark from budget_hours as all_hours
        ) as hours_extracted_at,
        {{ budget_limit_crossings_inputs() }} as inputs_fingerprint,
        budget_fingerprints.budget_fingerprint
    from crossings
    inner join budget_fingerprints
        on crossings.entity_budget_id = budget_fingerprints.entity_budget_id
    where crossings.crossing_rank = 1

)

select * from final
