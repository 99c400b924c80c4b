-- A table: int_model_budget_periods and fct_budget_threshold_crossings read it.
{{ config(materialized='table') }}

-- For every rolling window of a per-model budget and limit (its max budget, and each var
-- alert_threshold_pcts percentage of it): the request that took the window's cumulative spend
-- to the limit or beyond, and when it happened. The same shape as int_budget_limit_crossings.
-- Each request is measured against the limit in force when it was made
-- (int_budget_limit_versions); a limit crossed under several versions keeps the earliest.
with

model_budgets as (

    select * from {{ ref('int_model_budgets_aligned') }}

),

limit_versions as (

    select * from {{ ref('int_budget_limit_versions') }}

),

versioned_budgets as (

    select
        limit_versions.entity_budget_id,
        limit_versions.max_budget_usd,
        limit_versions.valid_from,
        limit_versions.valid_to
    from limit_versions
    inner join model_budgets
        on limit_versions.entity_budget_id = model_budgets.entity_budget_id

),

window_requests as (

    select * from {{ ref('int_model_budget_window_requests') }}

),

limits as (

    {{ budget_limit_rows(
        'versioned_budgets', with_soft_budget=false, extra_columns=['valid_from', 'valid_to'],
    ) }}

),

reached as (

    select
        limits.entity_budget_id,
        limits.crossing_type,
        limits.threshold_pct,
        limits.threshold_usd,
        window_requests.window_start,
        window_requests.started_at,
        window_requests.cumulative_window_spend_usd,
        row_number() over (
            partition by
                limits.entity_budget_id,
                limits.crossing_type,
                limits.threshold_pct,
                window_requests.window_start
            order by window_requests.started_at, window_requests.request_id
        ) as reach_rank
    from limits
    inner join window_requests
        on
            limits.entity_budget_id = window_requests.entity_budget_id
            and limits.threshold_usd <= window_requests.cumulative_window_spend_usd
            and (limits.valid_from is null or limits.valid_from <= window_requests.started_at)
            and (limits.valid_to is null or limits.valid_to > window_requests.started_at)

),

final as (

    select
        entity_budget_id,
        window_start as period_start,
        crossing_type,
        threshold_pct,
        cast(threshold_usd as numeric(38, 10)) as threshold_usd,
        cast(cumulative_window_spend_usd as numeric(38, 10)) as period_spend_at_crossing_usd,
        started_at as crossed_at
    from reached
    where reach_rank = 1

)

select * from final
