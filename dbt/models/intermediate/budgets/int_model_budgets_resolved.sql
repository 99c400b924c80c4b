-- Every per-model budget (model_max_budget, budget-features.md), one row per entity, source and
-- model entry, valid or not:
--   key_model_max_budget              the key's own entries (live and deleted keys)
--   team_model_max_budget             the key's team's entries, for models the key has no
--                                     entry of its own for (the key's entry overrides); the
--                                     spend is the key's, as the proxy keeps it per key
--   user_model_max_budget             the internal user's entries (not the proxy-budget row)
--   end_user_budget_model_max_budget  the entries of the end user's budget row
-- An entry is {"budget_limit": <usd>, "time_period": "<duration>"}, or with the accepted
-- spellings max_budget / budget_duration. config_error says why an entry (or a whole value that
-- is not a JSON object) cannot be enforced; the duration is parsed by int_budget_durations_parsed.
with

keys as (

    select * from {{ ref('int_keys_unioned') }}

),

key_rotations as (

    select * from {{ ref('int_key_rotations') }}

),

-- A hash a rotation replaced is the same key as its successor: its copy's entries are not a
-- second budget.
current_keys as (

    select keys.*
    from keys
    where keys.key_hash not in (select key_rotations.key_hash from key_rotations)

),

teams as (

    select * from {{ ref('int_teams_unioned') }}

),

users as (

    select * from {{ ref('stg_proxy__users') }}

),

end_users as (

    select * from {{ ref('stg_proxy__end_users') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

model_budget_maps as (

    select
        'key' as entity_type,
        key_hash as entity_id,
        coalesce(key_alias, key_name) as entity_alias,
        'key_model_max_budget' as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        model_max_budget_json as json_text
    from current_keys
    where model_max_budget_json is not null

    union all

    select
        'key' as entity_type,
        current_keys.key_hash as entity_id,
        coalesce(current_keys.key_alias, current_keys.key_name) as entity_alias,
        'team_model_max_budget' as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        teams.model_max_budget_json as json_text
    from current_keys
    inner join teams
        on current_keys.team_id = teams.team_id
    where teams.model_max_budget_json is not null

    union all

    select
        'user' as entity_type,
        user_id as entity_id,
        coalesce(user_alias, user_email) as entity_alias,
        'user_model_max_budget' as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        model_max_budget_json as json_text
    from users
    where model_max_budget_json is not null and not is_proxy_budget_row

    union all

    select
        'end_user' as entity_type,
        end_users.end_user_id as entity_id,
        end_users.end_user_alias as entity_alias,
        'end_user_budget_model_max_budget' as budget_source,
        budgets.budget_id,
        budgets.model_max_budget_json as json_text
    from end_users
    inner join budgets
        on end_users.budget_id = budgets.budget_id
    where budgets.model_max_budget_json is not null

),

entries as (

    {{ json_object_entries('model_budget_maps', 'json_text') }}

),

configured as (

    select
        model_budget_maps.entity_type,
        model_budget_maps.entity_id,
        model_budget_maps.entity_alias,
        model_budget_maps.budget_source,
        model_budget_maps.budget_id,
        entries.entry_key as budget_model,
        {{ model_budget_entry_limit_text('entries.entry_json') }} as limit_text,
        coalesce(
            {{ json_member_text('entries.entry_json', 'time_period') }},
            {{ json_member_text('entries.entry_json', 'budget_duration') }}
        ) as budget_duration
    from model_budget_maps
    inner join entries
        on model_budget_maps.json_text = entries.json_text

),

-- A value that is not a JSON object (nor JSON null) has no entries: one error row for it.
not_objects as (

    select
        model_budget_maps.entity_type,
        model_budget_maps.entity_id,
        model_budget_maps.entity_alias,
        model_budget_maps.budget_source,
        model_budget_maps.budget_id,
        cast(null as {{ sql_type('varchar') }}) as budget_model,
        cast(null as {{ sql_type('varchar') }}) as limit_text,
        cast(null as {{ sql_type('varchar') }}) as budget_duration
    from model_budget_maps
    where
        trim(model_budget_maps.json_text) not in ('null', '')
        and substr(trim(model_budget_maps.json_text), 1, 1) <> '{'

),

-- A key's own entry for a model overrides its team's entry for the same model.
effective as (

    select configured.*
    from configured
    where
        configured.budget_source <> 'team_model_max_budget'
        or not exists (
            select own.entity_id
            from configured as own
            where
                own.budget_source = 'key_model_max_budget'
                and own.entity_id = configured.entity_id
                and own.budget_model = configured.budget_model
        )

    union all

    select * from not_objects

),

checked as (

    select
        *,
        case
            when budget_model is null
                then 'model_max_budget is not a JSON object of model -> {budget_limit, time_period}'
            when limit_text is null
                then 'the entry has no budget_limit (or max_budget)'
            when not {{ is_usd_amount_text('limit_text') }}
                then 'budget_limit is not a non-negative number of USD'
        end as config_error
    from effective

),

final as (

    select
        {{ surrogate_key([
            'entity_type', 'entity_id', 'budget_source', "coalesce(budget_model, '')",
        ]) }} as entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_id,
        budget_model,
        budget_duration,
        cast(
            case when config_error is null then limit_text end as numeric(38, 10)
        ) as max_budget_usd,
        config_error
    from checked

)

select * from final
