-- A table: int_model_budget_crossings and int_model_budget_periods read it.
{{ config(materialized='table') }}

-- The rolling windows of every per-model budget, as the proxy opens them: a window opens at
-- the first charged request (spend > 0) of the budget's model and lasts the budget's duration
-- (Ns, Nm, Nh, Nd, Nw as that many seconds; 1mo as one calendar month; daily, weekly, monthly as
-- 1, 7 and 30 days); the next window opens at the first charged request at or after its end. A
-- budget without a duration has one window that never ends. Windows are found one after the
-- other (a recursive query: as many steps as the busiest budget has windows).
with recursive

window_lengths as (

    select * from {{ ref('int_model_budgets_aligned') }}

),

budget_requests as (

    select * from {{ ref('int_model_budget_requests') }}

),

charged as (

    select distinct
        entity_budget_id,
        started_at
    from budget_requests
    where spend_units > 0

),

-- One step per window: the next window opens at the first charged request at or after the end
-- of the previous one (null when there is none: that row ends the budget's recursion).
windows (entity_budget_id, window_number, window_start) as (

    select
        entity_budget_id,
        1 as window_number,
        min(started_at) as window_start
    from charged
    group by entity_budget_id

    union all

    select
        windows.entity_budget_id,
        windows.window_number + 1 as window_number,
        (
            select min(charged.started_at)
            from charged
            where
                charged.entity_budget_id = windows.entity_budget_id
                and charged.started_at >= {{ rolling_window_end(
                    'windows.window_start', 'window_lengths.window_months',
                    'window_lengths.window_seconds',
                ) }}
        ) as window_start
    from windows
    inner join window_lengths
        on windows.entity_budget_id = window_lengths.entity_budget_id
    where
        windows.window_start is not null
        and (window_lengths.window_months is not null or window_lengths.window_seconds is not null)

),

final as (

    select
        windows.entity_budget_id,
        windows.window_number,
        windows.window_start,
        {{ rolling_window_end(
            'windows.window_start', 'window_lengths.window_months', 'window_lengths.window_seconds',
        ) }} as window_end
    from windows
    inner join window_lengths
        on windows.entity_budget_id = window_lengths.entity_budget_id
    where windows.window_start is not null

)

select * from final
