-- The proxy's daily spend per tag (DailyTagSpend): every tag a request carries gets its full cost.
-- One row per (tag, UTC date of startTime, key, model, provider, MCP tool, endpoint) as the
-- proxy upserts it (increments per flush). The table is optional (older proxies): it then reads
-- as empty, and columns it lacks read as NULL or 0.
with

source as (

    {{ source_columns(
        'proxy', 'daily_tag_spend',
        [['tag', 'varchar'], ['request_id', 'varchar']] + daily_spend_source_columns(),
    ) }}

),

renamed as (

    select
        ----------  ids
        id as daily_spend_id,
        nullif(tag, '') as tag,
        nullif(request_id, '') as last_request_id,
        {{ daily_spend_staged_columns() }}

    from source

)

select * from renamed
