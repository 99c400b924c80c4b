with

source as (

    {{ source_columns('proxy', 'organizations', [
        ['organization_id', 'varchar'],
        ['organization_alias', 'varchar'],
        ['budget_id', 'varchar'],
        ['spend', 'double precision'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        organization_id,
        nullif(budget_id, '') as budget_id,

        ----------  strings
        nullif(organization_alias, '') as organization_alias,

        ----------  numerics
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  timestamps
        created_at,
        updated_at

    from source

)

select * from renamed
