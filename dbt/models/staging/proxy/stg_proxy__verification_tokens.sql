with

source as (

    {{ source_columns('proxy', 'verification_tokens', [
        ['token', 'varchar'],
        ['key_name', 'varchar'],
        ['key_alias', 'varchar'],
        ['user_id', 'varchar'],
        ['team_id', 'varchar'],
        ['organization_id', 'varchar'],
        ['budget_id', 'varchar'],
        ['project_id', 'varchar'],
        ['budget_duration', 'varchar'],
        ['model_max_budget', 'varchar'],
        ['budget_limits', 'varchar'],
        ['max_budget', 'double precision'],
        ['spend', 'double precision'],
        ['blocked', 'boolean'],
        ['expires', 'timestamp'],
        ['budget_reset_at', 'timestamp'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        token as key_hash,
        nullif(user_id, '') as user_id,
        nullif(team_id, '') as team_id,
        nullif(organization_id, '') as organization_id,
        nullif(budget_id, '') as budget_id,
        nullif(project_id, '') as project_id,

        ----------  strings
        key_name,
        nullif(key_alias, '') as key_alias,
        budget_duration,
        nullif(model_max_budget, '{}') as model_max_budget_json,
        nullif(budget_limits, '[]') as budget_limits_json,

        ----------  numerics
        {{ to_money('max_budget') }} as max_budget_usd,
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  booleans
        coalesce(blocked, false) as is_blocked,

        ----------  timestamps
        expires as expires_at,
        budget_reset_at,
        created_at,
        updated_at

    from source

)

select * from renamed
