-- The proxy's daily spend per user (DailyUserSpend); requests without a user have a row with an
-- empty user id.
-- One row per (user_id, UTC date of startTime, key, model, provider, MCP tool, endpoint) as the
-- proxy upserts it (increments per flush). The table is optional (older proxies): it then reads
-- as empty, and columns it lacks read as NULL or 0.
with

source as (

    {{ source_columns(
        'proxy', 'daily_user_spend',
        [['user_id', 'varchar']] + daily_spend_source_columns(),
    ) }}

),

renamed as (

    select
        ----------  ids
        id as daily_spend_id,
        nullif(user_id, '') as user_id,
        {{ daily_spend_staged_columns() }}

    from source

)

select * from renamed
