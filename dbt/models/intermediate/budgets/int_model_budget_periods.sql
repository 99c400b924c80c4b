-- A table: fct_budget_periods and fct_budget_threshold_crossings read it.
{{ config(materialized='table') }}

-- One row per per-model budget and rolling window with spend, in the columns of
-- int_budget_periods_projected plus budget_model: the window's spend, requests and limit
-- crossings; the window holding var budget_as_of is the current period, projected at the
-- window's run rate (spend so far / elapsed time x window length). A budget whose last window
-- has ended has no current period until its next charged request opens one.
with

model_budgets as (

    select * from {{ ref('int_model_budgets_resolved') }}

),

windows as (

    select * from {{ ref('int_model_budget_windows') }}

),

window_requests as (

    select * from {{ ref('int_model_budget_window_requests') }}

),

crossings as (

    select * from {{ ref('int_model_budget_crossings') }}

),

evaluation as (

    select {{ as_of_utc() }} as as_of_at

),

window_totals as (

    select
        entity_budget_id,
        window_start,
        {{ units_to_money('sum(spend_units)') }} as period_spend_usd,
        count(*) as request_count,
        min(started_at) as first_request_at,
        max(started_at) as last_request_at
    from window_requests
    group by
        entity_budget_id,
        window_start

),

max_budget_crossings as (

    select
        entity_budget_id,
        period_start,
        crossed_at as max_budget_crossed_at
    from crossings
    where crossing_type = 'max_budget'

),

joined as (

    select
        model_budgets.entity_budget_id,
        model_budgets.entity_type,
        model_budgets.entity_id,
        model_budgets.entity_alias,
        model_budgets.budget_source,
        model_budgets.budget_model,
        model_budgets.budget_id,
        model_budgets.budget_duration,
        model_budgets.max_budget_usd,
        windows.window_start as period_start,
        windows.window_end as period_end,
        window_totals.period_spend_usd,
        window_totals.request_count,
        window_totals.first_request_at,
        window_totals.last_request_at,
        max_budget_crossings.max_budget_crossed_at,
        evaluation.as_of_at,
        evaluation.as_of_at >= windows.window_start
        and (windows.window_end is null or evaluation.as_of_at < windows.window_end)
            as is_current_period
    from windows
    inner join model_budgets
        on windows.entity_budget_id = model_budgets.entity_budget_id
    inner join window_totals
        on
            windows.entity_budget_id = window_totals.entity_budget_id
            and windows.window_start = window_totals.window_start
    left join max_budget_crossings
        on
            windows.entity_budget_id = max_budget_crossings.entity_budget_id
            and windows.window_start = max_budget_crossings.period_start
    cross join evaluation

),

projected as (

    select
        *,
        case
            when not is_current_period or period_end is null then null
            when as_of_at <= period_start then period_spend_usd
            else {{ safe_divide(
                'period_spend_usd * ' ~ milliseconds_between('period_start', 'period_end'),
                milliseconds_between('period_start', 'as_of_at'),
                10,
            ) }}
        end as projected_period_spend_usd,
        case
            when not is_current_period or period_end is null then null
            else {{ safe_divide(milliseconds_between('period_start', 'as_of_at'), '86400000', 4) }}
        end as projection_basis_days
    from joined

),

final as (

    select
        {{ surrogate_key([
            'entity_type', 'entity_id', 'budget_source', 'budget_model', 'period_start',
        ]) }} as budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_model,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        budget_id,
        budget_duration,
        case when period_end is null then 'open' else 'rolling' end as period_kind,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        max_budget_usd,
        period_spend_usd,
        request_count,
        cast(null as numeric(38, 4)) as soft_budget_pct_used,
        {{ safe_divide('period_spend_usd * 100', 'max_budget_usd', 4) }} as max_budget_pct_used,
        projected_period_spend_usd,
        projection_basis_days,
        is_current_period,
        period_start,
        period_end,
        cast(null as timestamp) as soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at,
        as_of_at as evaluated_at
    from projected

)

select * from final
