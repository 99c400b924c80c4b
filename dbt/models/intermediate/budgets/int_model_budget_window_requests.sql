-- Each request of a per-model budget in the rolling window it falls in (requests of zero spend
-- between two windows fall in none), with the window's cumulative spend through it (requests
-- ordered by startTime, then request_id).
with

budget_requests as (

    select * from {{ ref('int_model_budget_requests') }}

),

windows as (

    select * from {{ ref('int_model_budget_windows') }}

),

placed as (

    select
        windows.entity_budget_id,
        windows.window_start,
        windows.window_end,
        budget_requests.request_id,
        budget_requests.spend_usd,
        budget_requests.spend_units,
        budget_requests.started_at
    from budget_requests
    inner join windows
        on
            budget_requests.entity_budget_id = windows.entity_budget_id
            and budget_requests.started_at >= windows.window_start
            and (windows.window_end is null or budget_requests.started_at < windows.window_end)

),

final as (

    select
        entity_budget_id,
        window_start,
        window_end,
        request_id,
        spend_usd,
        spend_units,
        started_at,
        {{ units_to_money(
            'sum(spend_units) over ('
            ~ 'partition by entity_budget_id, window_start '
            ~ 'order by started_at, request_id '
            ~ 'rows between unbounded preceding and current row)'
        ) }} as cumulative_window_spend_usd
    from placed

)

select * from final
