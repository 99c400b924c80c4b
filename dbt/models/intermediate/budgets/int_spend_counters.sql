{%- set default_id = var('max_end_user_budget_id') -%}
{%- set default_budget_id = (
    "'" ~ default_id ~ "'" if default_id is not none else 'cast(null as varchar)'
) -%}
-- Every live spend counter the proxy keeps, with the duration that resets it (proxy-db.md §4.3):
-- keys (own duration, else their budget row's), users, teams, end users and team members (their
-- budget row's; end users without one follow the default budget row when configured).
-- Organization counters are never reset, so they compare with all-time log spend.
with

keys as (

    select * from {{ ref('stg_proxy__verification_tokens') }}

),

teams as (

    select * from {{ ref('stg_proxy__teams') }}

),

organizations as (

    select * from {{ ref('stg_proxy__organizations') }}

),

users as (

    select * from {{ ref('stg_proxy__users') }}

),

end_users as (

    select * from {{ ref('stg_proxy__end_users') }}

),

team_memberships as (

    select * from {{ ref('stg_proxy__team_memberships') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

key_counters as (

    select
        'key' as entity_type,
        keys.key_hash as entity_id,
        coalesce(keys.key_alias, keys.key_name) as entity_alias,
        coalesce(keys.budget_duration, budgets.budget_duration) as counter_duration,
        keys.spend_counter_usd,
        false as is_never_reset,
        case
            when keys.budget_duration is not null then keys.created_at else budgets.created_at
        end as anchor_at,
        keys.budget_reset_at
    from keys
    left join budgets
        on keys.budget_id = budgets.budget_id

),

team_counters as (

    select
        'team' as entity_type,
        team_id as entity_id,
        team_alias as entity_alias,
        budget_duration as counter_duration,
        spend_counter_usd,
        false as is_never_reset,
        created_at as anchor_at,
        budget_reset_at
    from teams

),

organization_counters as (

    select
        'organization' as entity_type,
        organization_id as entity_id,
        organization_alias as entity_alias,
        cast(null as varchar) as counter_duration,
        spend_counter_usd,
        true as is_never_reset,
        created_at as anchor_at,
        cast(null as timestamp) as budget_reset_at
    from organizations

),

user_counters as (

    select
        'user' as entity_type,
        user_id as entity_id,
        coalesce(user_alias, user_email) as entity_alias,
        budget_duration as counter_duration,
        spend_counter_usd,
        false as is_never_reset,
        created_at as anchor_at,
        budget_reset_at
    from users
    where not is_proxy_budget_row

),

end_user_counters as (

    select
        'end_user' as entity_type,
        end_users.end_user_id as entity_id,
        end_users.end_user_alias as entity_alias,
        budgets.budget_duration as counter_duration,
        end_users.spend_counter_usd,
        false as is_never_reset,
        budgets.created_at as anchor_at,
        budgets.budget_reset_at
    from end_users
    left join budgets
        on coalesce(end_users.budget_id, {{ default_budget_id }}) = budgets.budget_id

),

team_member_counters as (

    select
        'team_member' as entity_type,
        team_memberships.team_member_id as entity_id,
        team_memberships.team_member_id as entity_alias,
        budgets.budget_duration as counter_duration,
        team_memberships.spend_counter_usd,
        false as is_never_reset,
        budgets.created_at as anchor_at,
        budgets.budget_reset_at
    from team_memberships
    left join budgets
        on team_memberships.budget_id = budgets.budget_id

),

final as (

    select * from key_counters
    union all
    select * from team_counters
    union all
    select * from organization_counters
    union all
    select * from user_counters
    union all
    select * from end_user_counters
    union all
    select * from team_member_counters

)

select * from final
