-- The limits of every budget over time, one row per budget and version: from valid_from (null:
-- since ever) to valid_to (null: still in force). A budget follows the versions of the row
-- carrying its amounts (int_budget_limit_history: the key's, team's or user's own row, a
-- budget_limits window of that row, or for a per-model budget the entry for its model in the
-- model_max_budget of the row holding it); a deleted budget row's last version has no limits. A
-- budget on a budget row has, at each instant, the limits of the row its linking row (key,
-- organization, end user, team membership, tag, project) linked then. After its last known
-- version, or since ever when its row has no history (or for the proxy-wide end-user default),
-- a budget has its current limits.
-- Consecutive versions with the same limits are one.
with

aligned_budgets as (

    select * from {{ ref('int_budgets_aligned') }}

),

model_budgets as (

    select * from {{ ref('int_model_budgets_aligned') }}

),

model_budget_limits as (

    select * from {{ ref('int_model_budgets_resolved') }}

),

budget_rows as (

    select * from {{ ref('stg_proxy__budgets') }}

),

keys as (

    select * from {{ ref('int_keys_unioned') }}

),

-- Every budget with its current limits: the calendar budgets and the per-model ones.
budgets as (

    select
        entity_budget_id,
        soft_budget_usd,
        max_budget_usd
    from aligned_budgets

    union all

    select
        model_budgets.entity_budget_id,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        model_budget_limits.max_budget_usd
    from model_budgets
    inner join model_budget_limits
        on model_budgets.entity_budget_id = model_budget_limits.entity_budget_id

),

resolved as (

    select * from {{ ref('int_budgets_resolved') }}

),

limit_history as (

    select * from {{ ref('int_budget_limit_history') }}

),

carriers as (

    select
        entity_budget_id,
        case entity_type
            when 'key' then 'verification_tokens'
            when 'team' then 'teams'
            when 'user' then 'users'
        end as source_table,
        entity_id as carrier_id,
        budget_window,
        budget_duration,
        cast(null as {{ sql_type('varchar') }}) as budget_model
    from resolved
    where
        budget_source in ('key', 'team', 'user')
        or (
            budget_source in ('key_budget_limits', 'team_budget_limits', 'user_budget_limits')
            and config_error is null
        )

    union all

    -- Per-model budgets: the row whose model_max_budget holds the entry (a key's team for
    -- team_model_max_budget, the end user's budget row).
    select
        model_budget_limits.entity_budget_id,
        case model_budget_limits.budget_source
            when 'key_model_max_budget' then 'verification_tokens'
            when 'team_model_max_budget' then 'teams'
            when 'user_model_max_budget' then 'users'
            when 'end_user_budget_model_max_budget' then 'budgets'
        end as source_table,
        case model_budget_limits.budget_source
            when 'team_model_max_budget' then keys.team_id
            when 'end_user_budget_model_max_budget' then model_budget_limits.budget_id
            else model_budget_limits.entity_id
        end as carrier_id,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        model_budget_limits.budget_duration,
        model_budget_limits.budget_model
    from model_budget_limits
    left join keys
        on
            model_budget_limits.entity_type = 'key'
            and model_budget_limits.entity_id = keys.key_hash
    where model_budget_limits.config_error is null

),

-- budget_limits windows: the limit of a window in a version is the max_budget of the version's
-- first window of the same budget_duration (none: the window did not exist then).
history_windows as (

    {{ json_array_entries('limit_history', 'budget_limits_json') }}

),

window_limits as (

    select
        json_text,
        {{ json_member_text('entry_json', 'budget_duration') }} as budget_duration,
        trim({{ json_member_text('entry_json', 'max_budget') }}) as limit_text,
        row_number() over (
            partition by json_text, {{ json_member_text('entry_json', 'budget_duration') }}
            order by entry_position
        ) as duration_rank
    from history_windows

),

-- model_max_budget entries: the limit of a per-model budget in a version is the version's entry
-- for its model (none: there was no entry then).
history_model_entries as (

    {{ json_object_entries('limit_history', 'model_max_budget_json') }}

),

model_limits as (

    select
        json_text,
        entry_key,
        {{ model_budget_entry_limit_text('entry_json') }} as limit_text
    from history_model_entries

),

followed as (

    select
        carriers.entity_budget_id,
        case
            when carriers.budget_window is null and carriers.budget_model is null
                then limit_history.soft_budget_usd
        end as soft_budget_usd,
        case
            when carriers.budget_model is not null
                then case
                    when {{ is_usd_amount_text('model_limits.limit_text') }}
                        then cast(model_limits.limit_text as numeric(38, 10))
                end
            when carriers.budget_window is null then limit_history.max_budget_usd
            when {{ is_usd_amount_text('window_limits.limit_text') }}
                then cast(window_limits.limit_text as numeric(38, 10))
        end as max_budget_usd,
        limit_history.valid_from,
        limit_history.valid_to
    from carriers
    inner join limit_history
        on
            carriers.source_table = limit_history.source_table
            and carriers.carrier_id = limit_history.entity_id
    left join window_limits
        on
            limit_history.budget_limits_json = window_limits.json_text
            and carriers.budget_duration = window_limits.budget_duration
            and window_limits.duration_rank = 1
    left join model_limits
        on
            limit_history.model_max_budget_json = model_limits.json_text
            and carriers.budget_model = model_limits.entry_key

),

-- Budgets whose amounts live on a budget row, with the row linking it (the key, organization,
-- end user, team membership, tag or project).
linked as (

    select
        entity_budget_id,
        budget_id,
        case budget_source
            when 'key_budget' then 'verification_tokens'
            when 'organization_budget' then 'organizations'
            when 'end_user_budget' then 'end_users'
            when 'team_member_budget' then 'team_memberships'
            when 'tag_budget' then 'tags'
            when 'project_budget' then 'projects'
        end as link_table,
        entity_id as link_id
    from resolved
    where
        budget_id is not null
        and budget_source in (
            'key_budget', 'organization_budget', 'end_user_budget', 'team_member_budget',
            'tag_budget', 'project_budget'
        )

),

-- The budget row each of them linked over time: the linking row's history of budget_id, else
-- its current link since ever.
link_versions as (

    select
        linked.entity_budget_id,
        limit_history.budget_id,
        limit_history.valid_from,
        limit_history.valid_to
    from linked
    inner join limit_history
        on
            linked.link_table = limit_history.source_table
            and linked.link_id = limit_history.entity_id

    union all

    select
        linked.entity_budget_id,
        linked.budget_id,
        cast(null as timestamp) as valid_from,
        cast(null as timestamp) as valid_to
    from linked
    where not exists (
        select limit_history.entity_id
        from limit_history
        where
            linked.link_table = limit_history.source_table
            and linked.link_id = limit_history.entity_id
    )

),

-- Every budget row's limits over time: its history, else its current limits since ever.
budget_row_versions as (

    select
        entity_id as budget_id,
        soft_budget_usd,
        max_budget_usd,
        valid_from,
        valid_to
    from limit_history
    where source_table = 'budgets'

    union all

    select
        budget_rows.budget_id,
        budget_rows.soft_budget_usd,
        budget_rows.max_budget_usd,
        cast(null as timestamp) as valid_from,
        cast(null as timestamp) as valid_to
    from budget_rows
    where budget_rows.budget_id not in (
        select limit_history.entity_id
        from limit_history
        where limit_history.source_table = 'budgets'
    )

),

-- A budget-row budget is in force with the limits of the row it linked at the time: each link
-- version crossed with the versions of its row that overlap it.
linked_versions as (

    select
        link_versions.entity_budget_id,
        budget_row_versions.soft_budget_usd,
        budget_row_versions.max_budget_usd,
        case
            when link_versions.valid_from is null then budget_row_versions.valid_from
            when budget_row_versions.valid_from is null then link_versions.valid_from
            else greatest(link_versions.valid_from, budget_row_versions.valid_from)
        end as valid_from,
        case
            when link_versions.valid_to is null then budget_row_versions.valid_to
            when budget_row_versions.valid_to is null then link_versions.valid_to
            else least(link_versions.valid_to, budget_row_versions.valid_to)
        end as valid_to
    from link_versions
    inner join budget_row_versions
        on
            link_versions.budget_id = budget_row_versions.budget_id
            and (
                link_versions.valid_to is null
                or budget_row_versions.valid_from is null
                or link_versions.valid_to > budget_row_versions.valid_from
            )
            and (
                budget_row_versions.valid_to is null
                or link_versions.valid_from is null
                or link_versions.valid_from < budget_row_versions.valid_to
            )

),

all_followed as (

    select
        entity_budget_id,
        soft_budget_usd,
        max_budget_usd,
        valid_from,
        valid_to
    from followed

    union all

    select * from linked_versions

),

-- The budget's current limits, from the end of its last known version (a change the audit log
-- recorded after the last snapshot), or since ever when its carrier has no history.
current_versions as (

    select
        budgets.entity_budget_id,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        max(all_followed.valid_to) as valid_from
    from budgets
    left join all_followed
        on budgets.entity_budget_id = all_followed.entity_budget_id
    group by budgets.entity_budget_id, budgets.soft_budget_usd, budgets.max_budget_usd
    having count(all_followed.entity_budget_id) = count(all_followed.valid_to)

),

versions as (

    select
        budgets.entity_budget_id,
        all_followed.soft_budget_usd,
        all_followed.max_budget_usd,
        all_followed.valid_from
    from budgets
    inner join all_followed
        on budgets.entity_budget_id = all_followed.entity_budget_id

    union all

    select
        entity_budget_id,
        soft_budget_usd,
        max_budget_usd,
        valid_from
    from current_versions

),

-- Consecutive versions with the same limits (another column of the row changed) are one.
changes as (

    select
        *,
        coalesce(
            soft_budget_usd is distinct from lag(soft_budget_usd) over by_start
            or max_budget_usd is distinct from lag(max_budget_usd) over by_start,
            true
        ) as is_change
    from versions
    window by_start as (partition by entity_budget_id order by valid_from asc nulls first)

),

final as (

    select
        entity_budget_id,
        soft_budget_usd,
        max_budget_usd,
        valid_from,
        lead(valid_from) over (
            partition by entity_budget_id order by valid_from asc nulls first
        ) as valid_to
    from changes
    where is_change

)

select * from final
