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
--   key_budget_limits   each window of the key's budget_limits list (multi-window budgets:
--                       {budget_duration, max_budget, reset_at}); budget_window = its duration
--   team_budget_limits  each window of the team's budget_limits list
--   user_budget_limits  each window of the user's budget_limits list (where the column exists)
-- Only rows with at least one limit are budgets. anchor_at (creation time of the row holding the
-- duration) anchors N-day periods. config_error says why a budget_limits window cannot be
-- enforced (null for every other budget: their durations are checked downstream).
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
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        created_at as anchor_at,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as config_error
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
        end as anchor_at,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as config_error
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
        budgets.created_at as anchor_at,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as config_error
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
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast({{ var('max_end_user_budget') }} as numeric(38, 10)) as max_budget_usd,
        cast(null as timestamp) as anchor_at,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as config_error
    from holders
    where entity_type = 'end_user' and budget_id is null
    {% else %}
    select
        cast(null as {{ sql_type('varchar') }}) as entity_type,
        cast(null as {{ sql_type('varchar') }}) as entity_id,
        cast(null as {{ sql_type('varchar') }}) as entity_alias,
        cast(null as {{ sql_type('varchar') }}) as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as timestamp) as anchor_at,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as config_error
    where 1 = 0
    {% endif %}

),

limit_windows as (

    {{ json_array_entries('holders', 'budget_limits_json') }}

),

-- key_budget_limits, team_budget_limits: one budget per window of the list, anchored like the
-- entity's own duration. A value that is not a JSON list, an element that is not an object, a
-- window without budget_duration or whose max_budget is not a number, and a second window of the
-- same duration cannot be enforced.
window_entries as (

    select
        holders.entity_type,
        holders.entity_id,
        holders.entity_alias,
        holders.entity_type || '_budget_limits' as budget_source,
        {{ json_member_text('limit_windows.entry_json', 'budget_duration') }} as budget_duration,
        trim({{ json_member_text('limit_windows.entry_json', 'max_budget') }}) as limit_text,
        holders.created_at as anchor_at,
        limit_windows.entry_position
    from holders
    inner join limit_windows
        on holders.budget_limits_json = limit_windows.json_text

    union all

    select
        entity_type,
        entity_id,
        entity_alias,
        entity_type || '_budget_limits' as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as {{ sql_type('varchar') }}) as limit_text,
        created_at as anchor_at,
        0 as entry_position
    from holders
    where
        trim(budget_limits_json) not in ('null', '')
        and substr(trim(budget_limits_json), 1, 1) <> '['

),

window_checks as (

    select
        *,
        row_number() over (
            partition by entity_type, entity_id, budget_duration
            order by entry_position
        ) as duration_rank,
        case
            when entry_position = 0
                then 'budget_limits is not a JSON list of {budget_duration, max_budget} windows'
            when budget_duration is null
                then 'the window has no budget_duration'
            when limit_text is null
                then 'the window has no max_budget'
            when not {{ is_usd_amount_text('limit_text') }}
                then 'max_budget is not a non-negative number of USD'
        end as window_error
    from window_entries

),

budget_limit_windows as (

    select
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        budget_duration,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(
            case when window_error is null then limit_text end as numeric(38, 10)
        ) as max_budget_usd,
        anchor_at,
        case
            when window_error is null and duration_rank = 1 then budget_duration
            else
                coalesce(budget_duration, '') || '#'
                || cast(entry_position as {{ sql_type('varchar') }})
        end as budget_window,
        coalesce(
            window_error,
            case when duration_rank > 1 then 'another window has the same budget_duration' end
        ) as config_error
    from window_checks

),

unioned as (

    select * from own_limits
    union all
    select * from budget_row_limits
    union all
    select * from end_user_default
    union all
    select * from budget_limit_windows

),

final as (

    select
        {{ surrogate_key([
            'entity_type', 'entity_id', "budget_source || coalesce(':' || budget_window, '')",
        ]) }} as entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_id,
        budget_duration,
        soft_budget_usd,
        max_budget_usd,
        anchor_at,
        budget_window,
        config_error
    from unioned

)

select * from final
