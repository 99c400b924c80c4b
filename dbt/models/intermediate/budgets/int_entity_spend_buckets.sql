-- A table: int_budget_spend_hourly and fct_spend_counter_reconciliation read it.
{{ config(materialized='table') }}

-- Each entity's spend per local hour (in var budget_timezone), from one scan of the requests.
-- Entities with a sub-hour budget (Nm, Ns steps put period boundaries inside hours) keep one
-- bucket per request start instead, so that their requests can be placed in their periods.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

entity_requests as (

    select * from {{ ref('int_entity_requests') }}

),

sub_hour_entities as (

    select distinct
        entity_type,
        entity_id
    from valid_budgets
    where is_sub_hour

),

buckets as (

    select
        entity_requests.entity_type,
        entity_requests.entity_id,
        case
            when sub_hour_entities.entity_id is not null then entity_requests.started_at_local
            else date_trunc('hour', entity_requests.started_at_local)
        end as bucket_local,
        {{ units_to_money('sum(entity_requests.spend_units)') }} as spend_usd,
        count(*) as request_count,
        min(entity_requests.started_at) as first_request_at,
        max(entity_requests.started_at) as last_request_at
    from entity_requests
    left join sub_hour_entities
        on
            entity_requests.entity_type = sub_hour_entities.entity_type
            and entity_requests.entity_id = sub_hour_entities.entity_id
    group by
        entity_requests.entity_type,
        entity_requests.entity_id,
        case
            when sub_hour_entities.entity_id is not null then entity_requests.started_at_local
            else date_trunc('hour', entity_requests.started_at_local)
        end

),

final as (

    select
        entity_type,
        entity_id,
        bucket_local,
        date_trunc('hour', bucket_local) as hour_local,
        spend_usd,
        cast(request_count as bigint) as request_count,
        first_request_at,
        last_request_at
    from buckets

)

select * from final
