-- One row per budget period and limit that was crossed (only crossings that happened): the soft
-- budget, the max budget, and each var alert_threshold_pcts percentage of the max budget. A limit
-- is crossed by the request (ordered by startTime, then request_id) that takes the period's
-- cumulative spend to the limit or beyond; crossed_at is that request's startTime. Calendar
-- budgets: int_budget_limit_crossings in the periods of int_budget_periods_bounded; per-model
-- budgets: int_model_budget_crossings in the rolling windows of int_model_budget_periods (the
-- periods of fct_budget_periods).
with

budget_periods as (

    select * from {{ ref('int_budget_periods_bounded') }}

),

limit_crossings as (

    select * from {{ ref('int_budget_limit_crossings') }}

),

model_budget_periods as (

    select * from {{ ref('int_model_budget_periods') }}

),

model_budget_crossings as (

    select * from {{ ref('int_model_budget_crossings') }}

),

calendar_crossings as (

    select
        budget_periods.budget_period_id,
        budget_periods.entity_type,
        budget_periods.entity_id,
        budget_periods.entity_alias,
        budget_periods.budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_model,
        budget_periods.budget_window,
        budget_periods.budget_id,
        budget_periods.budget_duration,
        limit_crossings.crossing_type,
        limit_crossings.threshold_pct,
        limit_crossings.threshold_usd,
        limit_crossings.period_spend_at_crossing_usd,
        limit_crossings.crossed_at,
        budget_periods.period_start,
        budget_periods.period_end
    from limit_crossings
    inner join budget_periods
        on
            limit_crossings.entity_budget_id = budget_periods.entity_budget_id
            and limit_crossings.period_start = budget_periods.period_start

),

rolling_crossings as (

    select
        model_budget_periods.budget_period_id,
        model_budget_periods.entity_type,
        model_budget_periods.entity_id,
        model_budget_periods.entity_alias,
        model_budget_periods.budget_source,
        model_budget_periods.budget_model,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        model_budget_periods.budget_id,
        model_budget_periods.budget_duration,
        model_budget_crossings.crossing_type,
        model_budget_crossings.threshold_pct,
        model_budget_crossings.threshold_usd,
        model_budget_crossings.period_spend_at_crossing_usd,
        model_budget_crossings.crossed_at,
        model_budget_periods.period_start,
        model_budget_periods.period_end
    from model_budget_crossings
    inner join model_budget_periods
        on
            model_budget_crossings.entity_budget_id = model_budget_periods.entity_budget_id
            and model_budget_crossings.period_start = model_budget_periods.period_start

),

unioned as (

    select * from calendar_crossings
    union all
    select * from rolling_crossings

),

final as (

    select
        {{ surrogate_key([
            'budget_period_id', 'crossing_type', 'threshold_pct',
        ]) }} as crossing_id,
        budget_period_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_model,
        budget_window,
        budget_id,
        budget_duration,
        crossing_type,
        threshold_pct,
        threshold_usd,
        period_spend_at_crossing_usd,
        crossed_at,
        period_start,
        period_end
    from unioned

)

select * from final
