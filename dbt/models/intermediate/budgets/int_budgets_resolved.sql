-- Every budget that applies to an entity, one row per entity and limit source (proxy-db.md §4.1):
--   key                 the key's own max_budget and budget_duration
--   key_budget          the key's budget row (soft_budget, max_budget); the key's own duration
--                       wins, else the budget row's
--   team                the team's max_budget and soft_budget, team duration
--   organization_budget the organization's budget row
--   user                the internal user's max_budget and duration (not the proxy-budget row)
--   end_user_budget     the end user's budget row
--   end_user_default    the proxy-wide default (vars max_end_user_budget_id / max_end_user_budget)
--                       for end users without a budget row
--   team_member_budget  the team membership's budget row
-- Only rows with at least one limit are budgets. anchor_at (creation time of the row holding the
-- duration) anchors N-day periods.
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

key_own as (

    select
        'key' as entity_type,
        key_hash as entity_id,
        coalesce(key_alias, key_name) as entity_alias,
        'key' as budget_source,
        cast(null as varchar) as budget_id,
        budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        max_budget_usd,
        created_at as anchor_at
    from keys
    where max_budget_usd is not null

),

key_budget as (

    select
        'key' as entity_type,
        keys.key_hash as entity_id,
        coalesce(keys.key_alias, keys.key_name) as entity_alias,
        'key_budget' as budget_source,
        budgets.budget_id,
        coalesce(keys.budget_duration, budgets.budget_duration) as budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        case
            when keys.budget_duration is not null then keys.created_at else budgets.created_at
        end as anchor_at
    from keys
    inner join budgets
        on keys.budget_id = budgets.budget_id
    where budgets.soft_budget_usd is not null or budgets.max_budget_usd is not null

),

team_own as (

    select
        'team' as entity_type,
        team_id as entity_id,
        team_alias as entity_alias,
        'team' as budget_source,
        cast(null as varchar) as budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        created_at as anchor_at
    from teams
    where soft_budget_usd is not null or max_budget_usd is not null

),

organization_budget as (

    select
        'organization' as entity_type,
        organizations.organization_id as entity_id,
        organizations.organization_alias as entity_alias,
        'organization_budget' as budget_source,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        budgets.created_at as anchor_at
    from organizations
    inner join budgets
        on organizations.budget_id = budgets.budget_id
    where budgets.soft_budget_usd is not null or budgets.max_budget_usd is not null

),

user_own as (

    select
        'user' as entity_type,
        user_id as entity_id,
        coalesce(user_alias, user_email) as entity_alias,
        'user' as budget_source,
        cast(null as varchar) as budget_id,
        budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        max_budget_usd,
        created_at as anchor_at
    from users
    where max_budget_usd is not null and not is_proxy_budget_row

),

end_user_budget as (

    select
        'end_user' as entity_type,
        end_users.end_user_id as entity_id,
        end_users.end_user_alias as entity_alias,
        'end_user_budget' as budget_source,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        budgets.created_at as anchor_at
    from end_users
    inner join budgets
        on end_users.budget_id = budgets.budget_id
    where budgets.soft_budget_usd is not null or budgets.max_budget_usd is not null

),

end_user_default as (

    {% if var('max_end_user_budget_id') is not none %}
    select
        'end_user' as entity_type,
        end_users.end_user_id as entity_id,
        end_users.end_user_alias as entity_alias,
        'end_user_default' as budget_source,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        budgets.created_at as anchor_at
    from end_users
    inner join budgets
        on budgets.budget_id = '{{ var("max_end_user_budget_id") }}'
    where end_users.budget_id is null
    {% elif var('max_end_user_budget') is not none %}
    select
        'end_user' as entity_type,
        end_user_id as entity_id,
        end_user_alias as entity_alias,
        'end_user_default' as budget_source,
        cast(null as varchar) as budget_id,
        cast(null as varchar) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast({{ var('max_end_user_budget') }} as numeric(38, 10)) as max_budget_usd,
        cast(null as timestamp) as anchor_at
    from end_users
    where budget_id is null
    {% else %}
    select
        cast(null as varchar) as entity_type,
        cast(null as varchar) as entity_id,
        cast(null as varchar) as entity_alias,
        cast(null as varchar) as budget_source,
        cast(null as varchar) as budget_id,
        cast(null as varchar) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as timestamp) as anchor_at
    where 1 = 0
    {% endif %}

),

team_member_budget as (

    select
        'team_member' as entity_type,
        team_memberships.team_member_id as entity_id,
        team_memberships.team_member_id as entity_alias,
        'team_member_budget' as budget_source,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        budgets.created_at as anchor_at
    from team_memberships
    inner join budgets
        on team_memberships.budget_id = budgets.budget_id
    where budgets.soft_budget_usd is not null or budgets.max_budget_usd is not null

),

unioned as (

    select * from key_own
    union all
    select * from key_budget
    union all
    select * from team_own
    union all
    select * from organization_budget
    union all
    select * from user_own
    union all
    select * from end_user_budget
    union all
    select * from end_user_default
    union all
    select * from team_member_budget

),

final as (

    select
        {{ surrogate_key(['entity_type', 'entity_id', 'budget_source']) }} as entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        anchor_at
    from unioned

)

select * from final
