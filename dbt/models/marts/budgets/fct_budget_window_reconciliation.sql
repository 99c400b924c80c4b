-- Each window the proxy keeps in BudgetWindowSpend (multi-window budgets, budget_limits) against
-- the spend the logs give for the same window: the period of the entity's budget_limits window
-- (int_budget_periods_bounded) that starts at the proxy's window_start, or whose end minus the
-- window's duration in seconds is that start (the proxy stores reset_at - duration, so a 30d
-- window of a 31-day month starts on the 2nd, and a sub-day window cut at midnight before its
-- length is up starts before the period). Status:
--   ok               the two agree within max(var counter_drift_tolerance_usd,
--                    var counter_drift_tolerance_pct % of log spend)
--   drift            they differ by more (the logs are the truth)
--   not_aligned      no period of the window starts at the proxy's window_start (var
--                    budget_timezone differs from the proxy's time zone, or the window's duration
--                    changed since)
--   not_configured   the entity has no valid budget_limits window of that duration (removed from
--                    budget_limits, or an entry the warehouse cannot enforce)
with

window_spend as (

    select * from {{ ref('stg_proxy__budget_window_spend') }}

),

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

budget_periods as (

    select * from {{ ref('int_budget_periods_bounded') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

-- Each period with the window_start the proxy gives it (reset_at - duration).
window_periods as (

    select
        budget_periods.*,
        case
            when durations.duration_seconds is not null
                then {{ dbt.dateadd(
                    'second', '-1 * durations.duration_seconds', 'budget_periods.period_end',
                ) }}
        end as proxy_window_start
    from budget_periods
    inner join durations
        on budget_periods.budget_window = durations.duration_key

),

windows as (

    select
        entity_type,
        entity_id,
        entity_alias,
        budget_window
    from budgets
    where
        budget_source in ('key_budget_limits', 'team_budget_limits', 'user_budget_limits')
        and config_error is null

),

compared as (

    select
        window_spend.entity_type,
        window_spend.entity_id,
        windows.entity_alias,
        window_spend.budget_window,
        window_spend.window_start,
        budget_periods.period_end as window_end,
        window_spend.window_spend_usd as proxy_window_spend_usd,
        budget_periods.period_spend_usd as log_window_spend_usd,
        budget_periods.request_count,
        window_spend.updated_at as proxy_updated_at,
        windows.entity_id is not null as is_configured,
        budget_periods.budget_period_id is not null as is_aligned
    from window_spend
    left join windows
        on
            window_spend.entity_type = windows.entity_type
            and window_spend.entity_id = windows.entity_id
            and window_spend.budget_window = windows.budget_window
    left join window_periods as budget_periods
        on
            window_spend.entity_type = budget_periods.entity_type
            and window_spend.entity_id = budget_periods.entity_id
            and window_spend.entity_type || '_budget_limits' = budget_periods.budget_source
            and window_spend.budget_window = budget_periods.budget_window
            and (
                window_spend.window_start = budget_periods.period_start
                or window_spend.window_start = budget_periods.proxy_window_start
            )

),

final as (

    select
        {{ surrogate_key(['entity_type', 'entity_id', 'budget_window']) }}
            as budget_window_reconciliation_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_window,
        case
            when not is_configured then 'not_configured'
            when not is_aligned then 'not_aligned'
            when {{ is_beyond_drift_tolerance(
                'proxy_window_spend_usd - log_window_spend_usd', 'log_window_spend_usd',
            ) }}
                then 'drift'
            else 'ok'
        end as reconciliation_status,
        cast(proxy_window_spend_usd as numeric(38, 10)) as proxy_window_spend_usd,
        cast(log_window_spend_usd as numeric(38, 10)) as log_window_spend_usd,
        cast(proxy_window_spend_usd - log_window_spend_usd as numeric(38, 10)) as drift_usd,
        cast(request_count as bigint) as request_count,
        window_start,
        window_end,
        proxy_updated_at
    from compared

)

select * from final
