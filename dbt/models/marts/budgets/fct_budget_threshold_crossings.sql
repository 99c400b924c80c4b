-- One row per budget period and limit that was crossed (only crossings that happened): the soft
-- budget, the max budget, and each var alert_threshold_pcts percentage of the max budget. A limit
-- is crossed by the request (ordered by startTime, then request_id) that takes the period's
-- cumulative spend to the limit or beyond; crossed_at is that request's startTime
-- (int_budget_limit_crossings); the periods are those of fct_budget_periods
-- (int_budget_periods_bounded).
with

budget_periods as (

    select * from {{ ref('int_budget_periods_bounded') }}

),

limit_crossings as (

    select * from {{ ref('int_budget_limit_crossings') }}

),

final as (

    select
        {{ surrogate_key([
            'budget_periods.budget_period_id', 'limit_crossings.crossing_type',
            'limit_crossings.threshold_pct',
        ]) }} as crossing_id,
        budget_periods.budget_period_id,
        budget_periods.entity_type,
        budget_periods.entity_id,
        budget_periods.entity_alias,
        budget_periods.budget_source,
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

)

select * from final
