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
--   tag_budget          the tag's budget row (TagTable.budget_id; tags without one have none)
--   project_budget      the project's budget row (ProjectTable.budget_id; likewise)
-- Only rows with at least one limit are budgets. anchor_at (creation time of the row holding the
-- duration) anchors N-day periods.
with

holders as (

    select * from {{ ref('int_budget_holders_unioned') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

-- key, team and user: the limits on the entity's own row.
own_limits as (

    select
        entity_type,
        entity_id,
        entity_alias,
        entity_type as budget_source,
        cast(null as varchar) as budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        created_at as anchor_at
    from holders
    where soft_budget_usd is not null or max_budget_usd is not null

),

-- key_budget, organization_budget, end_user_budget, team_member_budget, tag_budget,
-- project_budget: the linked budget row.
budget_row_limits as (

    select
        holders.entity_type,
        holders.entity_id,
        holders.entity_alias,
        holders.entity_type || '_budget' as budget_source,
        budgets.budget_id,
        coalesce(holders.budget_duration, budgets.budget_duration) as budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        case
            when holders.budget_duration is not null then holders.created_at
            else budgets.created_at
        end as anchor_at
    from holders
    inner join budgets
        on holders.budget_id = budgets.budget_id
    where budgets.soft_budget_usd is not null or budgets.max_budget_usd is not null

),

end_user_default as (

    {% if var('max_end_user_budget_id') is not none %}
    select
        holders.entity_type,
        holders.entity_id,
        holders.entity_alias,
        'end_user_default' as budget_source,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        budgets.created_at as anchor_at
    from holders
    inner join budgets
        on budgets.budget_id = '{{ var("max_end_user_budget_id") }}'
    where holders.entity_type = 'end_user' and holders.budget_id is null
    {% elif var('max_end_user_budget') is not none %}
    select
        entity_type,
        entity_id,
        entity_alias,
        'end_user_default' as budget_source,
        cast(null as varchar) as budget_id,
        cast(null as varchar) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast({{ var('max_end_user_budget') }} as numeric(38, 10)) as max_budget_usd,
        cast(null as timestamp) as anchor_at
    from holders
    where entity_type = 'end_user' and budget_id is null
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

unioned as (

    select * from own_limits
    union all
    select * from budget_row_limits
    union all
    select * from end_user_default

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
