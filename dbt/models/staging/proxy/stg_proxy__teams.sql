with

source as (

    {{ source_columns('proxy', 'teams', [
        ['team_id', 'varchar'],
        ['team_alias', 'varchar'],
        ['organization_id', 'varchar'],
        ['budget_duration', 'varchar'],
        ['model_max_budget', 'varchar'],
        ['budget_limits', 'varchar'],
        ['max_budget', 'double precision'],
        ['soft_budget', 'double precision'],
        ['spend', 'double precision'],
        ['blocked', 'boolean'],
        ['budget_reset_at', 'timestamp'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        team_id,
        nullif(organization_id, '') as organization_id,

        ----------  strings
        nullif(team_alias, '') as team_alias,
        budget_duration,
        nullif(model_max_budget, '{}') as model_max_budget_json,
        nullif(budget_limits, '[]') as budget_limits_json,

        ----------  numerics
        {{ to_money('max_budget') }} as max_budget_usd,
        {{ to_money('soft_budget') }} as soft_budget_usd,
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  booleans
        coalesce(blocked, false) as is_blocked,

        ----------  timestamps
        budget_reset_at,
        created_at,
        updated_at

    from source

)

select * from renamed
