-- A table: several marts read it, and recomputing it per reader dominates the build.
{{ config(materialized='table') }}

-- Every request that counts against a budget with a valid duration, placed in its budget period
-- (aligned in var budget_timezone, see macros/budget_periods.sql) with the period's running
-- spend up to and including it (ties on startTime ordered by request_id).
-- The open-ended period of a budget without duration starts at the local day the budget's
-- owner was created, or of its first request when earlier or unknown.
with

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

entity_requests as (

    select * from {{ ref('int_entity_requests') }}

),

valid_budgets as (

    {{ budgets_with_valid_duration('budgets', 'durations') }}

),

budget_requests as (

    select
        valid_budgets.entity_budget_id,
        valid_budgets.period_kind,
        valid_budgets.step_days,
        valid_budgets.step_seconds,
        valid_budgets.anchor_local,
        valid_budgets.created_local,
        entity_requests.request_id,
        entity_requests.spend_usd,
        entity_requests.started_at,
        entity_requests.started_at_local as started_local
    from valid_budgets
    inner join entity_requests
        on
            valid_budgets.entity_type = entity_requests.entity_type
            and valid_budgets.entity_id = entity_requests.entity_id

),

first_requests as (

    select
        entity_budget_id,
        min(started_local) as first_request_local
    from budget_requests
    group by entity_budget_id

),

with_first_request as (

    select
        budget_requests.*,
        first_requests.first_request_local
    from budget_requests
    inner join first_requests
        on budget_requests.entity_budget_id = first_requests.entity_budget_id

),

periodized as (

    select
        entity_budget_id,
        request_id,
        spend_usd,
        started_at,
        case
            when period_kind = 'open'
                then date_trunc(
                    'day',
                    case
                        when created_local < first_request_local then created_local
                        else first_request_local
                    end
                )
            else
                {{ budget_period_start_local(
                    'started_local', 'period_kind', 'step_days', 'step_seconds', 'anchor_local'
                ) }}
        end as period_start_local
    from with_first_request

),

accumulated as (

    select
        entity_budget_id,
        {{ local_to_utc('period_start_local') }} as period_start,
        period_start_local,
        request_id,
        spend_usd,
        cast(
            sum(spend_usd) over (
                partition by entity_budget_id, period_start_local
                order by started_at, request_id
                rows between unbounded preceding and current row
            ) as numeric(38, 10)
        ) as cumulative_period_spend_usd,
        started_at
    from periodized

)

select * from accumulated
