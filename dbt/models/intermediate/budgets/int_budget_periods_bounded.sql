-- A table: int_budget_periods_projected and fct_budget_threshold_crossings read it.
{{ config(materialized='table') }}

-- One row per entity, budget and period: every period with spend, plus each budget's current
-- period (also when it has no spend yet), with its bounds, spend and limit crossings. Periods come
-- from budget_duration aligned in var budget_timezone (int_budget_spend_hourly); boundaries are
-- kept both as local wall-clock time and in UTC. Limits are crossed as int_budget_limit_crossings
-- finds. Budgets whose duration cannot be parsed have no periods here: they are listed in
-- fct_budget_duration_errors.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

budget_hours as (

    select * from {{ ref('int_budget_spend_hourly') }}

),

limit_crossings as (

    select * from {{ ref('int_budget_limit_crossings') }}

),

evaluation as (

    select {{ utc_to_local(as_of_utc()) }} as as_of_local

),

crossed_limits as (

    select
        entity_budget_id,
        period_start,
        min(case when crossing_type = 'soft_budget' then crossed_at end) as soft_budget_crossed_at,
        min(case when crossing_type = 'max_budget' then crossed_at end) as max_budget_crossed_at
    from limit_crossings
    where crossing_type in ('soft_budget', 'max_budget')
    group by
        entity_budget_id,
        period_start

),

period_totals as (

    select
        entity_budget_id,
        period_start_local,
        period_start,
        sum(spend_usd) as period_spend_usd,
        sum(request_count) as request_count,
        min(first_request_at) as first_request_at,
        max(last_request_at) as last_request_at
    from budget_hours
    group by
        entity_budget_id,
        period_start_local,
        period_start

),

periods_with_spend as (

    select
        period_totals.entity_budget_id,
        period_totals.period_start_local,
        period_totals.period_spend_usd,
        period_totals.request_count,
        crossed_limits.soft_budget_crossed_at,
        crossed_limits.max_budget_crossed_at,
        period_totals.first_request_at,
        period_totals.last_request_at
    from period_totals
    left join crossed_limits
        on
            period_totals.entity_budget_id = crossed_limits.entity_budget_id
            and period_totals.period_start = crossed_limits.period_start

),

open_period_starts as (

    select
        entity_budget_id,
        min(period_start_local) as period_start_local
    from periods_with_spend
    group by entity_budget_id

),

current_periods as (

    select
        valid_budgets.entity_budget_id,
        case
            when valid_budgets.period_kind = 'open'
                then coalesce(
                    open_period_starts.period_start_local,
                    date_trunc('day', coalesce(valid_budgets.created_local, evaluation.as_of_local))
                )
            else {{ budget_period_start_local(
                'evaluation.as_of_local', 'valid_budgets.period_kind', 'valid_budgets.step_days',
                'valid_budgets.step_seconds', 'valid_budgets.anchor_local',
            ) }}
        end as period_start_local
    from valid_budgets
    cross join evaluation
    left join open_period_starts
        on valid_budgets.entity_budget_id = open_period_starts.entity_budget_id

),

all_periods as (

    select
        entity_budget_id,
        period_start_local
    from periods_with_spend
    union
    select
        entity_budget_id,
        period_start_local
    from current_periods

),

bounded_periods as (

    select
        all_periods.entity_budget_id,
        all_periods.period_start_local,
        case
            when valid_budgets.period_kind <> 'open'
                then {{ budget_period_end_local(
                    'all_periods.period_start_local', 'valid_budgets.period_kind',
                    'valid_budgets.step_days', 'valid_budgets.step_seconds',
                ) }}
        end as period_end_local,
        current_periods.entity_budget_id is not null as is_current_period
    from all_periods
    inner join valid_budgets
        on all_periods.entity_budget_id = valid_budgets.entity_budget_id
    left join current_periods
        on
            all_periods.entity_budget_id = current_periods.entity_budget_id
            and all_periods.period_start_local = current_periods.period_start_local

),

joined as (

    select
        valid_budgets.entity_budget_id,
        valid_budgets.entity_type,
        valid_budgets.entity_id,
        valid_budgets.entity_alias,
        valid_budgets.budget_source,
        valid_budgets.budget_window,
        valid_budgets.budget_id,
        valid_budgets.budget_duration,
        valid_budgets.soft_budget_usd,
        valid_budgets.max_budget_usd,
        valid_budgets.period_kind,
        bounded_periods.is_current_period,
        bounded_periods.period_start_local,
        bounded_periods.period_end_local,
        {{ local_to_utc('bounded_periods.period_start_local') }} as period_start,
        {{ local_to_utc('bounded_periods.period_end_local') }} as period_end,
        coalesce(periods_with_spend.period_spend_usd, 0) as period_spend_usd,
        coalesce(periods_with_spend.request_count, 0) as request_count,
        periods_with_spend.soft_budget_crossed_at,
        periods_with_spend.max_budget_crossed_at,
        periods_with_spend.first_request_at,
        periods_with_spend.last_request_at
    from bounded_periods
    inner join valid_budgets
        on bounded_periods.entity_budget_id = valid_budgets.entity_budget_id
    left join periods_with_spend
        on
            bounded_periods.entity_budget_id = periods_with_spend.entity_budget_id
            and bounded_periods.period_start_local = periods_with_spend.period_start_local

),

final as (

    select
        {{ surrogate_key([
            'entity_type', 'entity_id', "budget_source || coalesce(':' || budget_window, '')",
            'period_start',
        ]) }} as budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_window,
        budget_id,
        budget_duration,
        period_kind,
        soft_budget_usd,
        max_budget_usd,
        period_spend_usd,
        request_count,
        {{ safe_divide('period_spend_usd * 100', 'soft_budget_usd', 4) }} as soft_budget_pct_used,
        {{ safe_divide('period_spend_usd * 100', 'max_budget_usd', 4) }} as max_budget_pct_used,
        is_current_period,
        period_start_local,
        period_end_local,
        period_start,
        period_end,
        soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at
    from joined

)

select * from final
