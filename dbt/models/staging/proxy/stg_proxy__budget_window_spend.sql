-- The proxy's durable copy of the spend of each multi-window budget window (BudgetWindowSpend,
-- one row per entity and window duration, upserted with every increment; window_start is the
-- start of the window the proxy is counting). The table is optional (proxies before 2026-08):
-- it then reads as empty.
with

source as (

    {{ source_columns('proxy', 'budget_window_spend', [
        ['entity_type', 'varchar'],
        ['entity_id', 'varchar'],
        ['window_duration', 'varchar'],
        ['window_start', 'timestamp'],
        ['spend', 'double precision'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        case
            when entity_type in ('key', 'virtual_key', 'api_key', 'token') then 'key'
            else entity_type
        end as entity_type,
        entity_id,

        ----------  strings
        window_duration as budget_window,

        ----------  numerics
        {{ to_money('spend') }} as window_spend_usd,

        ----------  timestamps
        window_start,
        created_at,
        updated_at

    from source

)

select * from renamed
