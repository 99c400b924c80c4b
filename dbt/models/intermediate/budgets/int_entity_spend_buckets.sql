{{
    config(
        materialized='table' if target.type == 'spark' else 'incremental',
        incremental_strategy='delete+insert',
        unique_key='bucket_date',
        on_schema_change='fail',
        pre_hook="{{ entity_spend_buckets_reset() }}",
    )
}}
-- depends_on: {{ ref('stg_proxy__spend_logs') }}
-- depends_on: {{ ref('int_spend_logs_attributed') }}
-- depends_on: {{ ref('int_request_tag_lists') }}
-- Each entity's spend per local hour (in var budget_timezone), from one scan of the requests.
-- Entities with a sub-hour budget (Nm, Ns steps put period boundaries inside hours) keep one
-- bucket per request start instead, so that their requests can be placed in their periods.
-- Incremental (a table on Spark, whose parquet tables cannot delete rows): each run re-builds
-- the local days that received requests extracted after the last build (late ones of any age)
-- and the last var incremental_rebuild_days days. When what the buckets take from outside the
-- requests changed since (keys' and teams' attribution, key rotations, budgeted projects and
-- tags, sub-hour budgets, the time zone: entity_spend_buckets_inputs), the pre-hook deletes
-- every bucket and the run re-builds them all, so an incremental build equals a full one.
with

valid_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

{% if is_incremental() %}

-- The local days with requests extracted after the last build, and the var
-- incremental_rebuild_days days before the latest day built (as the daily facts: requests of a
-- key first seen in this build); every day when the pre-hook emptied the table.
rebuilt_days as (

    select distinct cast({{ utc_to_local('started_at') }} as date) as bucket_date
    from {{ ref('stg_proxy__spend_logs') }}
    where
        extracted_at > (select max(last_extracted_at) as watermark from {{ this }})
        or {{ utc_to_local('started_at') }} >= (
            select {{ add_days('max(bucket_date)', '-' ~ var('incremental_rebuild_days')) }}
            from {{ this }}
        )
        or not exists (select 1 as is_built from {{ this }})

),

-- The requests of those days, filtered before they fan out to their entities (a range first,
-- which the scan can use, then the exact days).
entity_requests as (

    {{ entity_requests(
        "started_at_local >= (select min(bucket_date) as first_day from rebuilt_days)
        and cast(started_at_local as date) in (select bucket_date from rebuilt_days)"
    ) | indent(4) }}

),

{% else %}

entity_requests as (

    select * from {{ ref('int_entity_requests') }}

),

{% endif %}

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
        max(entity_requests.started_at) as last_request_at,
        max(entity_requests.extracted_at) as last_extracted_at
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
        last_request_at,
        cast(bucket_local as date) as bucket_date,
        last_extracted_at,
        {{ entity_spend_buckets_inputs() }} as inputs_fingerprint
    from buckets

)

select * from final
