with

source as (

    {{ source_columns('proxy', 'users', [
        ['user_id', 'varchar'],
        ['user_alias', 'varchar'],
        ['user_email', 'varchar'],
        ['user_role', 'varchar'],
        ['team_id', 'varchar'],
        ['organization_id', 'varchar'],
        ['budget_duration', 'varchar'],
        ['model_max_budget', 'varchar'],
        ['budget_limits', 'varchar'],
        ['max_budget', 'double precision'],
        ['spend', 'double precision'],
        ['budget_reset_at', 'timestamp'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        user_id,
        nullif(organization_id, '') as organization_id,

        ----------  strings
        nullif(user_alias, '') as user_alias,
        nullif(user_email, '') as user_email,
        user_role,
        budget_duration,
        nullif(model_max_budget, '{}') as model_max_budget_json,
        nullif(budget_limits, '[]') as budget_limits_json,

        ----------  numerics
        {{ to_money('max_budget') }} as max_budget_usd,
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  booleans
        user_id = '{{ var("proxy_budget_user_id") }}' as is_proxy_budget_row,

        ----------  timestamps
        budget_reset_at,
        created_at,
        updated_at

    from source

)

select * from renamed
