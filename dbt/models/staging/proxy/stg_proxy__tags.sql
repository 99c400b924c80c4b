-- Tags (TagTable). Only a tag with a row here and a budget row (budget_id) is a budget holder;
-- the table is optional (older proxies): it then reads as empty.
with

source as (

    {{ source_columns('proxy', 'tags', [
        ['tag_name', 'varchar'],
        ['description', 'varchar'],
        ['budget_id', 'varchar'],
        ['spend', 'double precision'],
        ['created_at', 'timestamp'],
        ['created_by', 'varchar'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        tag_name,
        nullif(budget_id, '') as budget_id,

        ----------  strings
        nullif(description, '') as tag_description,
        nullif(created_by, '') as created_by,

        ----------  numerics
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  timestamps
        created_at,
        updated_at

    from source

)

select * from renamed
