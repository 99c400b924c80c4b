-- Every budget period of int_budget_periods_bounded with the projection of its spend at period
-- end (current, bounded period only): with at least one whole week of history before var
-- budget_as_of, spend so far plus, for each remaining part of a local day, the average spend of
-- that weekday over the trailing whole weeks (up to var projection_history_days) of whole local
-- hours before the hour of budget_as_of; otherwise the period's run rate (spend so far / elapsed
-- time x period length).
with

bounded_periods as (

    select * from {{ ref('int_budget_periods_bounded') }}

),

budget_hours as (

    select * from {{ ref('int_budget_spend_hourly') }}

),

evaluation as (

    select
        {{ as_of_utc() }} as as_of_at,
        {{ utc_to_local(as_of_utc()) }} as as_of_local,
        date_trunc('hour', {{ utc_to_local(as_of_utc()) }}) as as_of_hour_local,
        date_trunc('day', {{ utc_to_local(as_of_utc()) }}) as as_of_day_local

),

-- Day-of-week projection inputs: trailing whole weeks of history per budget.
history as (

    select
        entity_budget_id,
        min(first_request_at) as first_ever_request_at
    from budget_hours
    group by entity_budget_id

),

history_weeks as (

    select
        history.entity_budget_id,
        least(
            cast(floor(
                {{ milliseconds_between('history.first_ever_request_at', 'evaluation.as_of_at') }}
                / cast(604800000 as numeric)
            ) as integer),
            cast(floor({{ var('projection_history_days') }} / 7.0) as integer)
        ) as basis_weeks
    from history
    cross join evaluation

),

weekday_rates as (

    select
        history_weeks.entity_budget_id,
        {{ iso_weekday('budget_hours.hour_local') }} as iso_weekday,
        sum(budget_hours.spend_usd) as weekday_spend_usd
    from history_weeks
    cross join evaluation
    inner join budget_hours
        on history_weeks.entity_budget_id = budget_hours.entity_budget_id
    where
        history_weeks.basis_weeks >= 1
        and budget_hours.hour_local < evaluation.as_of_hour_local
        and budget_hours.hour_local
        >= {{ add_days('evaluation.as_of_hour_local', '-7 * history_weeks.basis_weeks') }}
    group by
        history_weeks.entity_budget_id,
        {{ iso_weekday('budget_hours.hour_local') }}

),

digits as (

    select 0 as digit
    {% for digit in range(1, 10) %}
    union all
    select {{ digit }} as digit
    {% endfor %}

),

day_offsets as (

    select ones.digit + 10 * tens.digit + 100 * hundreds.digit as day_offset
    from digits as ones
    cross join digits as tens
    cross join digits as hundreds

),

remaining_days as (

    select
        bounded_periods.entity_budget_id,
        {{ add_days('evaluation.as_of_day_local', 'day_offsets.day_offset') }} as day_start_local,
        {{ add_days('evaluation.as_of_day_local', 'day_offsets.day_offset + 1') }} as day_end_local,
        bounded_periods.period_end_local,
        evaluation.as_of_local
    from bounded_periods
    cross join evaluation
    cross join day_offsets
    where
        bounded_periods.is_current_period
        and bounded_periods.period_end_local is not null
        and {{ add_days('evaluation.as_of_day_local', 'day_offsets.day_offset') }}
        < bounded_periods.period_end_local

),

remaining_slices as (

    select
        entity_budget_id,
        {{ iso_weekday('day_start_local') }} as iso_weekday,
        {{ milliseconds_between(
            'case when day_start_local > as_of_local then day_start_local else as_of_local end',
            'case when day_end_local < period_end_local then day_end_local else period_end_local end',
        ) }} as remaining_ms
    from remaining_days

),

weekday_projection as (

    select
        remaining_slices.entity_budget_id,
        sum(
            coalesce(weekday_rates.weekday_spend_usd, 0) * remaining_slices.remaining_ms
        ) as weighted_spend_ms
    from remaining_slices
    left join weekday_rates
        on
            remaining_slices.entity_budget_id = weekday_rates.entity_budget_id
            and remaining_slices.iso_weekday = weekday_rates.iso_weekday
    group by remaining_slices.entity_budget_id

),

joined as (

    select
        bounded_periods.*,
        coalesce(history_weeks.basis_weeks, 0) as basis_weeks,
        weekday_projection.weighted_spend_ms,
        evaluation.as_of_at
    from bounded_periods
    cross join evaluation
    left join history_weeks
        on bounded_periods.entity_budget_id = history_weeks.entity_budget_id
    left join weekday_projection
        on bounded_periods.entity_budget_id = weekday_projection.entity_budget_id

),

projected as (

    select
        joined.*,
        case
            when not joined.is_current_period or joined.period_end is null then null
            when joined.basis_weeks >= 1
                then
                    joined.period_spend_usd
                    + coalesce(
                        {{ safe_divide('weighted_spend_ms', '86400000 * basis_weeks', 10) }}, 0
                    )
            when joined.as_of_at <= joined.period_start then joined.period_spend_usd
            else {{ safe_divide(
                'period_spend_usd * ' ~ milliseconds_between('period_start', 'period_end'),
                milliseconds_between('period_start', 'as_of_at'),
                10,
            ) }}
        end as projected_period_spend_usd,
        case
            when not joined.is_current_period or joined.period_end is null then null
            when joined.basis_weeks >= 1 then cast(7 * joined.basis_weeks as numeric(12, 4))
            when joined.as_of_at <= joined.period_start then cast(0 as numeric(12, 4))
            else {{ safe_divide(milliseconds_between('period_start', 'as_of_at'), '86400000', 4) }}
        end as projection_basis_days
    from joined

),

final as (

    select
        budget_period_id,
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
        soft_budget_pct_used,
        max_budget_pct_used,
        projected_period_spend_usd,
        projection_basis_days,
        is_current_period,
        period_start,
        period_end,
        soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at,
        as_of_at as evaluated_at
    from projected

)

select * from final
