-- Each live spend counter (key, team, organization, user, end user, team member, budgeted tag,
-- budgeted project) against the spend the logs give for the same window: the counter's current
-- period (its reset duration aligned in var budget_timezone) up to var budget_as_of, or all time
-- for counters that are never reset (organizations, and entities without a duration). Drift beyond
-- max(var counter_drift_tolerance_usd, var counter_drift_tolerance_pct % of log spend) is flagged.
-- Counters with an unparsable duration get status invalid_duration and no comparison.
with

spend_counters as (

    select * from {{ ref('int_spend_counters') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

entity_buckets as (

    select * from {{ ref('int_entity_spend_buckets') }}

),

evaluation as (

    select
        {{ as_of_utc() }} as as_of_at,
        {{ utc_to_local(as_of_utc()) }} as as_of_local

),

windows as (

    select
        spend_counters.*,
        durations.is_valid,
        case
            when spend_counters.is_never_reset or durations.period_kind = 'open' then 'all_time'
            when durations.is_valid then 'current_period'
        end as comparison_window,
        case
            when
                durations.is_valid
                and not spend_counters.is_never_reset
                and durations.period_kind <> 'open'
                then {{ local_to_utc(budget_period_start_local(
                    'evaluation.as_of_local', 'durations.period_kind', 'durations.step_days',
                    'durations.step_seconds',
                    utc_to_local('coalesce(spend_counters.anchor_at, cast(\'1970-01-01\' as timestamp))'),
                )) }}
        end as window_start,
        evaluation.as_of_at
    from spend_counters
    cross join evaluation
    inner join durations
        on coalesce(spend_counters.counter_duration, '<none>') = durations.duration_key

),

-- Log spend in each window: whole buckets (int_entity_spend_buckets) inside it, plus the
-- requests, one by one, of the few hourly buckets that straddle a window boundary.
window_buckets as (

    select
        windows.entity_type,
        windows.entity_id,
        windows.window_start,
        windows.as_of_at,
        entity_buckets.bucket_local,
        entity_buckets.hour_local,
        entity_buckets.spend_usd,
        entity_buckets.request_count,
        (
            windows.window_start is null
            or windows.window_start <= entity_buckets.first_request_at
        )
        and windows.as_of_at >= entity_buckets.last_request_at as is_inside
    from windows
    inner join entity_buckets
        on
            windows.entity_type = entity_buckets.entity_type
            and windows.entity_id = entity_buckets.entity_id
    where
        windows.comparison_window is not null
        and windows.as_of_at >= entity_buckets.first_request_at
        and (
            windows.window_start is null
            or windows.window_start <= entity_buckets.last_request_at
        )

),

-- The requests (int_entity_requests) of those hours only, filtered before they fan out to
-- their entities.
entity_requests as (

    {{ entity_requests(
        "date_trunc('hour', started_at_local) in (
            select hour_local from window_buckets
            where not is_inside and bucket_local = hour_local
        )"
    ) | indent(4) }}

),

straddling_requests as (

    select
        window_buckets.entity_type,
        window_buckets.entity_id,
        {{ units_to_money('sum(entity_requests.spend_units)') }} as spend_usd,
        count(*) as request_count
    from window_buckets
    inner join entity_requests
        on
            window_buckets.entity_type = entity_requests.entity_type
            and window_buckets.entity_id = entity_requests.entity_id
            and window_buckets.hour_local = date_trunc('hour', entity_requests.started_at_local)
    where
        not window_buckets.is_inside
        and window_buckets.bucket_local = window_buckets.hour_local
        and window_buckets.as_of_at >= entity_requests.started_at
        and (
            window_buckets.window_start is null
            or window_buckets.window_start <= entity_requests.started_at
        )
    group by
        window_buckets.entity_type,
        window_buckets.entity_id

),

window_parts as (

    select
        entity_type,
        entity_id,
        spend_usd,
        request_count
    from window_buckets
    where is_inside

    union all

    select
        entity_type,
        entity_id,
        spend_usd,
        request_count
    from straddling_requests

),

log_spend as (

    select
        entity_type,
        entity_id,
        sum(spend_usd) as log_spend_usd,
        sum(request_count) as request_count
    from window_parts
    group by
        entity_type,
        entity_id

),

compared as (

    select
        windows.entity_type,
        windows.entity_id,
        windows.entity_alias,
        windows.counter_duration,
        coalesce(windows.comparison_window, 'invalid_duration') as comparison_window,
        windows.spend_counter_usd,
        case
            when windows.comparison_window is not null then coalesce(log_spend.log_spend_usd, 0)
        end as log_spend_usd,
        case
            when windows.comparison_window is not null then coalesce(log_spend.request_count, 0)
        end as request_count,
        windows.window_start,
        windows.budget_reset_at,
        windows.as_of_at
    from windows
    left join log_spend
        on
            windows.entity_type = log_spend.entity_type
            and windows.entity_id = log_spend.entity_id

),

flagged as (

    select
        {{ surrogate_key(['entity_type', 'entity_id']) }} as reconciliation_id,
        entity_type,
        entity_id,
        entity_alias,
        counter_duration,
        comparison_window,
        case
            when comparison_window = 'invalid_duration' then 'invalid_duration'
            when {{ is_beyond_drift_tolerance(
                'coalesce(spend_counter_usd, 0) - log_spend_usd', 'log_spend_usd',
            ) }}
                then 'drift'
            else 'ok'
        end as reconciliation_status,
        cast(spend_counter_usd as numeric(38, 10)) as spend_counter_usd,
        cast(log_spend_usd as numeric(38, 10)) as log_spend_usd,
        cast(coalesce(spend_counter_usd, 0) - log_spend_usd as numeric(38, 10)) as drift_usd,
        cast(request_count as bigint) as request_count,
        window_start,
        budget_reset_at,
        as_of_at as evaluated_at
    from compared

),

final as (

    select
        reconciliation_id,
        entity_type,
        entity_id,
        entity_alias,
        counter_duration,
        comparison_window,
        reconciliation_status,
        spend_counter_usd,
        log_spend_usd,
        drift_usd,
        request_count,
        reconciliation_status = 'drift' as is_drifted,
        window_start,
        budget_reset_at,
        evaluated_at
    from flagged

)

select * from final
