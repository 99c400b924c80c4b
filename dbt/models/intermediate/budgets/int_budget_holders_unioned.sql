-- Every entity that can hold a budget or a spend counter, one row per entity (proxy-db.md §4.1,
-- §4.3): keys, teams, organizations, users (without the proxy-budget row), end users, team
-- members, tags and projects. Keys, teams and users carry limits on their own row
-- (budget_duration, max_budget, budget_reset_at; soft_budget for teams); keys, organizations, end
-- users, team members, tags and projects link a budget row through budget_id. Tags and projects
-- are holders only with a TagTable / ProjectTable row whose budget_id points at an existing
-- budget row (the proxy enforces nothing else). Keys and teams also carry their multi-window
-- budgets (budget_limits JSON).
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

tags as (

    select * from {{ ref('stg_proxy__tags') }}

),

projects as (

    select * from {{ ref('stg_proxy__projects') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

key_holders as (

    select
        'key' as entity_type,
        key_hash as entity_id,
        coalesce(key_alias, key_name) as entity_alias,
        budget_id,
        budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        max_budget_usd,
        spend_counter_usd,
        budget_reset_at,
        created_at,
        budget_limits_json
    from keys

),

team_holders as (

    select
        'team' as entity_type,
        team_id as entity_id,
        team_alias as entity_alias,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        spend_counter_usd,
        budget_reset_at,
        created_at,
        budget_limits_json
    from teams

),

budget_row_links as (

    select
        'organization' as entity_type,
        organization_id as entity_id,
        organization_alias as entity_alias,
        budget_id,
        spend_counter_usd,
        created_at
    from organizations

    union all

    select
        'end_user' as entity_type,
        end_user_id as entity_id,
        end_user_alias as entity_alias,
        budget_id,
        spend_counter_usd,
        cast(null as timestamp) as created_at
    from end_users

    union all

    select
        'team_member' as entity_type,
        team_member_id as entity_id,
        team_member_id as entity_alias,
        budget_id,
        spend_counter_usd,
        cast(null as timestamp) as created_at
    from team_memberships

    union all

    select
        'tag' as entity_type,
        tags.tag_name as entity_id,
        tags.tag_name as entity_alias,
        tags.budget_id,
        tags.spend_counter_usd,
        tags.created_at
    from tags
    inner join budgets
        on tags.budget_id = budgets.budget_id

    union all

    select
        'project' as entity_type,
        projects.project_id as entity_id,
        coalesce(projects.project_alias, projects.project_id) as entity_alias,
        projects.budget_id,
        projects.spend_counter_usd,
        projects.created_at
    from projects
    inner join budgets
        on projects.budget_id = budgets.budget_id

),

-- Organizations, end users, team members, tags and projects: all their limits live on the budget
-- row.
budget_row_holders as (

    select
        entity_type,
        entity_id,
        entity_alias,
        budget_id,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as max_budget_usd,
        spend_counter_usd,
        cast(null as timestamp) as budget_reset_at,
        created_at,
        cast(null as {{ sql_type('varchar') }}) as budget_limits_json
    from budget_row_links

),

user_holders as (

    select
        'user' as entity_type,
        user_id as entity_id,
        coalesce(user_alias, user_email) as entity_alias,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        max_budget_usd,
        spend_counter_usd,
        budget_reset_at,
        created_at,
        budget_limits_json
    from users
    where not is_proxy_budget_row

),

final as (

    select * from key_holders
    union all
    select * from team_holders
    union all
    select * from user_holders
    union all
    select * from budget_row_holders

)

select * from final
