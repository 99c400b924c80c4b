-- A table: int_budget_limit_crossings and both int_budget_periods_* models read it.
{{ config(materialized='table') }}

-- Spend of every budget with a valid duration per budget period and local hour (in var
-- budget_timezone), with the period's running spend before and through the hour. Period
-- boundaries of every kind but sub-hour steps (Nm, Ns) fall on whole local hours, so those
-- budgets take their periods from the entity's hourly totals (int_entity_spend_buckets); the
-- requests of an entity with a sub-hour budget are placed in their periods one by one. The
-- open-ended period of a budget without duration starts at the local day the budget's owner
-- was created, or of its first request when earlier or unknown.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

entity_buckets as (

    select * from {{ ref('int_entity_spend_buckets') }}

),

budget_buckets as (

    select
        valid_budgets.entity_budget_id,
        valid_budgets.period_kind,
        valid_budgets.created_local,
        case
            when valid_budgets.period_kind <> 'open'
                then {{ budget_period_start_local(
                    'entity_buckets.bucket_local', 'valid_budgets.period_kind',
                    'valid_budgets.step_days', 'valid_budgets.step_seconds',
                    'valid_budgets.anchor_local',
                ) }}
        end as period_start_local,
        entity_buckets.hour_local,
        entity_buckets.spend_usd,
        entity_buckets.request_count,
        entity_buckets.first_request_at,
        entity_buckets.last_request_at,
        entity_buckets.last_extracted_at
    from valid_budgets
    inner join entity_buckets
        on
            valid_budgets.entity_type = entity_buckets.entity_type
            and valid_budgets.entity_id = entity_buckets.entity_id

),

buckets as (

    select
        entity_budget_id,
        period_kind,
        created_local,
        period_start_local,
        hour_local,
        sum(spend_usd) as spend_usd,
        sum(request_count) as request_count,
        min(first_request_at) as first_request_at,
        max(last_request_at) as last_request_at,
        max(last_extracted_at) as last_extracted_at
    from budget_buckets
    group by
        entity_budget_id,
        period_kind,
        created_local,
        period_start_local,
        hour_local

),

first_hours as (

    select
        entity_budget_id,
        min(hour_local) as first_hour_local
    from buckets
    group by entity_budget_id

),

periodized as (

    select
        buckets.entity_budget_id,
        case
            when buckets.period_kind = 'open'
                then date_trunc(
                    'day',
                    case
                        when buckets.created_local < first_hours.first_hour_local
                            then buckets.created_local
                        else first_hours.first_hour_local
                    end
                )
            else buckets.period_start_local
        end as period_start_local,
        buckets.hour_local,
        buckets.spend_usd,
        buckets.request_count,
        buckets.first_request_at,
        buckets.last_request_at,
        buckets.last_extracted_at
    from buckets
    inner join first_hours
        on buckets.entity_budget_id = first_hours.entity_budget_id

),

accumulated as (

    select
        entity_budget_id,
        {{ local_to_utc('period_start_local') }} as period_start,
        period_start_local,
        hour_local,
        cast(spend_usd as numeric(38, 10)) as spend_usd,
        cast(request_count as bigint) as request_count,
        first_request_at,
        last_request_at,
        last_extracted_at,
        cast(
            sum(spend_usd) over (
                partition by entity_budget_id, period_start_local
                order by hour_local
                rows between unbounded preceding and current row
            ) as numeric(38, 10)
        ) as cumulative_period_spend_usd
    from periodized

),

final as (

    select
        entity_budget_id,
        period_start,
        period_start_local,
        hour_local,
        spend_usd,
        request_count,
        first_request_at,
        last_request_at,
        cast(cumulative_period_spend_usd - spend_usd as numeric(38, 10))
            as spend_before_hour_usd,
        cumulative_period_spend_usd,
        last_extracted_at
    from accumulated

)

select * from final
