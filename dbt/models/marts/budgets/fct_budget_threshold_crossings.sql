-- One row per budget period and limit that was crossed (only crossings that happened): the soft
-- budget, the max budget, and each var alert_threshold_pcts percentage of the max budget. A limit
-- is crossed by the request (ordered by startTime, then request_id) that takes the period's
-- cumulative spend to the limit or beyond; crossed_at is that request's startTime.
with

budget_periods as (

    select * from {{ ref('fct_budget_periods') }}

),

period_requests as (

    select * from {{ ref('int_budget_requests_periodized') }}

),

thresholds as (

    {% for pct in var('alert_threshold_pcts') %}
    select cast({{ pct }} as numeric(9, 4)) as threshold_pct
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

limits as (

    select
        budget_period_id,
        entity_budget_id,
        period_start,
        'soft_budget' as crossing_type,
        cast(null as numeric(9, 4)) as threshold_pct,
        soft_budget_usd as threshold_usd
    from budget_periods
    where soft_budget_usd is not null and request_count > 0

    union all

    select
        budget_period_id,
        entity_budget_id,
        period_start,
        'max_budget' as crossing_type,
        cast(null as numeric(9, 4)) as threshold_pct,
        max_budget_usd as threshold_usd
    from budget_periods
    where max_budget_usd is not null and request_count > 0

    union all

    select
        budget_periods.budget_period_id,
        budget_periods.entity_budget_id,
        budget_periods.period_start,
        'threshold' as crossing_type,
        thresholds.threshold_pct,
        cast(
            budget_periods.max_budget_usd * thresholds.threshold_pct * cast(0.01 as numeric(9, 4))
            as numeric(38, 10)
        ) as threshold_usd
    from budget_periods
    cross join thresholds
    where budget_periods.max_budget_usd is not null and budget_periods.request_count > 0

),

crossings as (

    select
        limits.budget_period_id,
        limits.crossing_type,
        limits.threshold_pct,
        limits.threshold_usd,
        min(period_requests.started_at) as crossed_at,
        min(period_requests.cumulative_period_spend_usd) as period_spend_at_crossing_usd
    from limits
    inner join period_requests
        on
            limits.entity_budget_id = period_requests.entity_budget_id
            and limits.period_start = period_requests.period_start
            and limits.threshold_usd <= period_requests.cumulative_period_spend_usd
    group by
        limits.budget_period_id,
        limits.crossing_type,
        limits.threshold_pct,
        limits.threshold_usd

),

final as (

    select
        {{ surrogate_key([
            'crossings.budget_period_id', 'crossings.crossing_type', 'crossings.threshold_pct',
        ]) }} as crossing_id,
        crossings.budget_period_id,
        budget_periods.entity_type,
        budget_periods.entity_id,
        budget_periods.entity_alias,
        budget_periods.budget_source,
        budget_periods.budget_id,
        budget_periods.budget_duration,
        crossings.crossing_type,
        crossings.threshold_pct,
        cast(crossings.threshold_usd as numeric(38, 10)) as threshold_usd,
        cast(crossings.period_spend_at_crossing_usd as numeric(38, 10))
            as period_spend_at_crossing_usd,
        crossings.crossed_at,
        budget_periods.period_start,
        budget_periods.period_end
    from crossings
    inner join budget_periods
        on crossings.budget_period_id = budget_periods.budget_period_id

)

select * from final
