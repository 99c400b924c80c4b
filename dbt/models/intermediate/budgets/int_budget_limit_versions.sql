-- The limits of every budget over time, one row per budget and version: from valid_from (null:
-- since ever) to valid_to (null: still in force). A budget whose limits come from a row the
-- warehouse has a history of (stg_proxy__budget_limit_history: the key's, team's or user's own
-- row, or the budget row) has one version per version of that row; a deleted budget row's last
-- version has no limits. Every other budget (no history yet, the proxy-wide end-user default,
-- budget_limits windows) has one version, its current limits, since ever.
with

budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

resolved as (

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
    from resolved
    where budget_source in ('key', 'team', 'user')

    union all

    select
        entity_budget_id,
        'budgets' as source_table,
        budget_id as carrier_id
    from resolved
    where
        budget_id is not null
        and budget_source in (
            'key_budget', 'organization_budget', 'end_user_budget', 'team_member_budget',
            'tag_budget', 'project_budget'
        )

),

followed as (

    select
        carriers.entity_budget_id,
        limit_history.soft_budget_usd,
        limit_history.max_budget_usd,
        limit_history.valid_from,
        lead(limit_history.valid_from) over (
            partition by carriers.entity_budget_id
            order by limit_history.valid_from asc nulls first, limit_history.observed_at asc
        ) as valid_to
    from carriers
    inner join limit_history
        on
            carriers.source_table = limit_history.source_table
            and carriers.carrier_id = limit_history.entity_id

),

final as (

    select
        budgets.entity_budget_id,
        followed.soft_budget_usd,
        followed.max_budget_usd,
        followed.valid_from,
        followed.valid_to
    from budgets
    inner join followed
        on budgets.entity_budget_id = followed.entity_budget_id

    union all

    select
        budgets.entity_budget_id,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        cast(null as timestamp) as valid_from,
        cast(null as timestamp) as valid_to
    from budgets
    where budgets.entity_budget_id not in (select followed.entity_budget_id from followed)

)

select * from final
