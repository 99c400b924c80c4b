-- The proxy's daily spend per organization (DailyOrganizationSpend, newer proxies).
-- One row per (organization_id, UTC date of startTime, key, model, provider, MCP tool,
-- endpoint) as the proxy upserts it (increments per flush). The table is optional (older
-- proxies): it then reads as empty, and columns it lacks read as NULL or 0.
with

source as (

    {{ source_columns(
        'proxy', 'daily_organization_spend',
        [['organization_id', 'varchar']] + daily_spend_source_columns(),
    ) }}

),

renamed as (

    select
        ----------  ids
        id as daily_spend_id,
        nullif(organization_id, '') as organization_id,
        {{ daily_spend_staged_columns() }}

    from source

)

select * from renamed
