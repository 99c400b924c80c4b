-- The proxy's daily spend per end user (DailyEndUserSpend, newer proxies); empty ids are skipped
-- by the proxy.
-- One row per (end_user_id, UTC date of startTime, key, model, provider, MCP tool, endpoint) as the
-- proxy upserts it (increments per flush). The table is optional (older proxies): it then reads
-- as empty, and columns it lacks read as NULL or 0.
with

source as (

    {{ source_columns(
        'proxy', 'daily_end_user_spend',
        [['end_user_id', 'varchar']] + daily_spend_source_columns(),
    ) }}

),

renamed as (

    select
        ----------  ids
        id as daily_spend_id,
        nullif(end_user_id, '') as end_user_id,
        {{ daily_spend_staged_columns() }}

    from source

)

select * from renamed
