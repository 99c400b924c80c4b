-- Each change of the limits a budget reads, one row per budget and change: the start of every
-- version after the first (stg_proxy__budget_limit_history) of the row that carries the budget's
-- amounts: the key's, team's or user's own row for their own limits, the budget row for limits
-- from a budget row. Budgets from model_max_budget and budget_limits, and the proxy-wide
-- end-user default, are not followed.
with

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

limit_history as (

    select * from {{ ref('stg_proxy__budget_limit_history') }}

),

carriers as (

    select
        entity_budget_id,
        case entity_type
            when 'key' then 'verification_tokens'
            when 'team' then 'teams'
            when 'user' then 'users'
        end as source_table,
        entity_id as carrier_id
    from budgets
    where budget_source in ('key', 'team', 'user')

    union all

    select
        entity_budget_id,
        'budgets' as source_table,
        budget_id as carrier_id
    from budgets
    where
        budget_id is not null
        and budget_source in (
            'key_budget', 'organization_budget', 'end_user_budget', 'team_member_budget',
            'tag_budget', 'project_budget'
        )

),

final as (

    select
        carriers.entity_budget_id,
        limit_history.version_id,
        limit_history.valid_from as changed_at,
        limit_history.is_deleted
    from carriers
    inner join limit_history
        on
            carriers.source_table = limit_history.source_table
            and carriers.carrier_id = limit_history.entity_id
    where limit_history.valid_from is not null

)

select * from final
