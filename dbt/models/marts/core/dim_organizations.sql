-- Every organization with its budget row's current limits. Organization ids only the spend
-- logs name (the request's, its key's or its team's organization when no organization row
-- exists: deleted, or a logs-only source) are added with is_known false.
with

organizations as (

    select * from {{ ref('stg_proxy__organizations') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

attributed as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

logged_organizations as (

    {{ ids_only_in_logs('attributed', 'organizations', 'organization_id') }}

),

known_organizations as (

    select
        organizations.organization_id,
        organizations.budget_id,
        organizations.organization_alias,
        budgets.budget_duration,
        budgets.max_budget_usd,
        budgets.soft_budget_usd,
        organizations.spend_counter_usd,
        organizations.created_at,
        organizations.updated_at,
        true as is_known
    from organizations
    left join budgets
        on organizations.budget_id = budgets.budget_id

),

unknown_organizations as (

    select
        organization_id,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        cast(null as {{ sql_type('varchar') }}) as organization_alias,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as spend_counter_usd,
        cast(null as timestamp) as created_at,
        cast(null as timestamp) as updated_at,
        false as is_known
    from logged_organizations

),

final as (

    select * from known_organizations
    union all
    select * from unknown_organizations

)

select * from final
