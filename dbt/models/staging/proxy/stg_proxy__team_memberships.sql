with

source as (

    {{ source_columns('proxy', 'team_memberships', [
        ['team_id', 'varchar'],
        ['user_id', 'varchar'],
        ['budget_id', 'varchar'],
        ['spend', 'double precision'],
        ['total_spend', 'double precision'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        team_id || '/' || user_id as team_member_id,
        team_id,
        user_id,
        nullif(budget_id, '') as budget_id,

        ----------  numerics
        {{ to_money('spend') }} as spend_counter_usd,
        {{ to_money('total_spend') }} as total_spend_counter_usd

    from source

)

select * from renamed
