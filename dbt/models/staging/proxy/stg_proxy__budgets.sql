with

source as (

    {{ source_columns('proxy', 'budgets', [
        ['budget_id', 'varchar'],
        ['budget_duration', 'varchar'],
        ['model_max_budget', 'varchar'],
        ['max_budget', 'double precision'],
        ['soft_budget', 'double precision'],
        ['budget_reset_at', 'timestamp'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        budget_id,

        ----------  strings
        budget_duration,
        nullif(model_max_budget, '{}') as model_max_budget_json,

        ----------  numerics
        {{ to_money('max_budget') }} as max_budget_usd,
        {{ to_money('soft_budget') }} as soft_budget_usd,

        ----------  timestamps
        budget_reset_at,
        created_at,
        updated_at

    from source

)

select * from renamed
