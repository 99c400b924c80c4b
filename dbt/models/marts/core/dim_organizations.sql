-- Every organization with its budget row's current limits.
with

organizations as (

    select * from {{ ref('stg_proxy__organizations') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

final as (

    select
        organizations.organization_id,
        organizations.budget_id,
        organizations.organization_alias,
        budgets.budget_duration,
        budgets.max_budget_usd,
        budgets.soft_budget_usd,
        organizations.spend_counter_usd,
        organizations.created_at,
        organizations.updated_at
    from organizations
    left join budgets
        on organizations.budget_id = budgets.budget_id

)

select * from final
