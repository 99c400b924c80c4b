with

source as (

    {{ source_columns('proxy', 'end_users', [
        ['user_id', 'varchar'],
        ['alias', 'varchar'],
        ['budget_id', 'varchar'],
        ['spend', 'double precision'],
        ['blocked', 'boolean'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        user_id as end_user_id,
        nullif(budget_id, '') as budget_id,

        ----------  strings
        nullif(alias, '') as end_user_alias,

        ----------  numerics
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  booleans
        coalesce(blocked, false) as is_blocked

    from source

)

select * from renamed
