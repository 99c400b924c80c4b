-- One row per entity, budget and period: every period with spend, plus each budget's current
-- period (also when it has no spend yet). Periods come from budget_duration aligned in var
-- budget_timezone (int_budget_spend_hourly); boundaries are stored in UTC. Limits are crossed
-- as int_budget_limit_crossings finds. Budgets whose duration cannot be parsed have no periods
-- here: they are listed in fct_budget_duration_errors.
--
-- Projection (current, bounded period only): with at least one whole week of history before
-- var budget_as_of, spend so far plus, for each remaining part of a local day, the average spend
-- of that weekday over the trailing whole weeks (up to var projection_history_days) of whole
-- local hours before the hour of budget_as_of; otherwise the period's run rate (spend so far /
-- elapsed time x period length).
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

    select
        {{ as_of_utc() }} as as_of_at,
        {{ utc_to_local(as_of_utc()) }} as as_of_local,
        date_trunc('hour', {{ utc_to_local(as_of_utc()) }}) as as_of_hour_local,
        date_trunc('day', {{ utc_to_local(as_of_utc()) }}) as as_of_day_local

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
        cast(extract(isodow from budget_hours.hour_local) as integer) as iso_weekday,
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
        cast(extract(isodow from budget_hours.hour_local) as integer)

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
        cast(extract(isodow from day_start_local) as integer) as iso_weekday,
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
        valid_budgets.entity_budget_id,
        valid_budgets.entity_type,
        valid_budgets.entity_id,
        valid_budgets.entity_alias,
        valid_budgets.budget_source,
        valid_budgets.budget_id,
        valid_budgets.budget_duration,
        valid_budgets.soft_budget_usd,
        valid_budgets.max_budget_usd,
        valid_budgets.period_kind,
        bounded_periods.is_current_period,
        {{ local_to_utc('bounded_periods.period_start_local') }} as period_start,
        {{ local_to_utc('bounded_periods.period_end_local') }} as period_end,
        coalesce(periods_with_spend.period_spend_usd, 0) as period_spend_usd,
        coalesce(periods_with_spend.request_count, 0) as request_count,
        periods_with_spend.soft_budget_crossed_at,
        periods_with_spend.max_budget_crossed_at,
        periods_with_spend.first_request_at,
        periods_with_spend.last_request_at,
        coalesce(history_weeks.basis_weeks, 0) as basis_weeks,
        weekday_projection.weighted_spend_ms,
        evaluation.as_of_at
    from bounded_periods
    cross join evaluation
    inner join valid_budgets
        on bounded_periods.entity_budget_id = valid_budgets.entity_budget_id
    left join periods_with_spend
        on
            bounded_periods.entity_budget_id = periods_with_spend.entity_budget_id
            and bounded_periods.period_start_local = periods_with_spend.period_start_local
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
        {{ surrogate_key(['entity_type', 'entity_id', 'budget_source', 'period_start']) }}
            as budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_id,
        budget_duration,
        period_kind,
        cast(soft_budget_usd as numeric(38, 10)) as soft_budget_usd,
        cast(max_budget_usd as numeric(38, 10)) as max_budget_usd,
        cast(period_spend_usd as numeric(38, 10)) as period_spend_usd,
        cast(request_count as bigint) as request_count,
        {{ safe_divide('period_spend_usd * 100', 'soft_budget_usd', 4) }} as soft_budget_pct_used,
        {{ safe_divide('period_spend_usd * 100', 'max_budget_usd', 4) }} as max_budget_pct_used,
        cast(projected_period_spend_usd as numeric(38, 10)) as projected_period_spend_usd,
        cast(projection_basis_days as numeric(12, 4)) as projection_basis_days,
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
