{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
    )
}}
-- The attribution int_spend_logs_attributed takes from keys and teams (a key's owner,
-- organization, project and identity after rotations, a team's organization), one version per
-- key or team each time it changes or disappears. Incremental (append): each build adds the
-- versions that differ from the latest. The daily spend facts re-build the days of the keys and
-- teams whose attribution changed since their own last build (spend_daily_rebuild_filter), and
-- int_entity_spend_buckets re-builds every day after any change, so an incremental build equals
-- a full one. A column added here starts null in older versions: the next build records one
-- change per key or team, once.
with

keys as (

    select * from {{ ref('int_keys_unioned') }}

),

teams as (

    select * from {{ ref('int_teams_unioned') }}

),

key_rotations as (

    select * from {{ ref('int_key_rotations') }}

),

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

current_states as (

    select
        'key' as holder_type,
        keys.key_hash as holder_id,
        keys.user_id,
        keys.organization_id,
        keys.project_id,
        coalesce(key_rotations.key_identity, keys.key_hash) as key_identity
    from keys
    left join key_rotations
        on keys.key_hash = key_rotations.key_hash

    union all

    select
        'team' as holder_type,
        team_id as holder_id,
        cast(null as {{ sql_type('varchar') }}) as user_id,
        organization_id,
        cast(null as {{ sql_type('varchar') }}) as project_id,
        cast(null as {{ sql_type('varchar') }}) as key_identity
    from teams

),

{% if is_incremental() %}

{#- Columns added after a warehouse was first built read as null until this build adds them. -#}
{%- set built = column_names(this) %}

versions as (

    select
        holder_type,
        holder_id,
        version_number,
        is_present,
        user_id,
        organization_id,
        {%- for column in ['project_id', 'key_identity'] %}
        {% if column in built %}{{ column }}{% else -%}
            cast(null as {{ sql_type('varchar') }}) as {{ column }}
        {%- endif %},
        {%- endfor %}
        row_number() over (
            partition by holder_type, holder_id order by version_number desc
        ) as recency
    from {{ this }}

),

latest as (

    select * from versions
    where recency = 1

),

{% else %}

latest as (

    select
        cast(null as {{ sql_type('varchar') }}) as holder_type,
        cast(null as {{ sql_type('varchar') }}) as holder_id,
        cast(null as integer) as version_number,
        cast(null as boolean) as is_present,
        cast(null as {{ sql_type('varchar') }}) as user_id,
        cast(null as {{ sql_type('varchar') }}) as organization_id,
        cast(null as {{ sql_type('varchar') }}) as project_id,
        cast(null as {{ sql_type('varchar') }}) as key_identity
    where 1 = 0

),

{% endif %}

-- A holder seen for the first time, back after it disappeared, changed or gone.
changed as (

    select
        coalesce(current_states.holder_type, latest.holder_type) as holder_type,
        coalesce(current_states.holder_id, latest.holder_id) as holder_id,
        coalesce(latest.version_number, 0) + 1 as version_number,
        current_states.holder_id is not null as is_present,
        current_states.user_id,
        current_states.organization_id,
        current_states.project_id,
        current_states.key_identity,
        latest.holder_id is not null as is_change
    from current_states
    full outer join latest
        on
            current_states.holder_type = latest.holder_type
            and current_states.holder_id = latest.holder_id
    where
        latest.holder_id is null
        or (current_states.holder_id is null and latest.is_present)
        or (
            current_states.holder_id is not null
            and (
                not latest.is_present
                or current_states.user_id is distinct from latest.user_id
                or current_states.organization_id is distinct from latest.organization_id
                or current_states.project_id is distinct from latest.project_id
                or current_states.key_identity is distinct from latest.key_identity
            )
        )

),

final as (

    select
        {{ surrogate_key(['holder_type', 'holder_id', 'version_number']) }}
            as attribution_version_id,
        holder_type,
        holder_id,
        cast(version_number as integer) as version_number,
        is_present,
        user_id,
        organization_id,
        project_id,
        key_identity,
        is_change,
        (
            select max(spend_logs.extracted_at) as last_extracted_at from spend_logs
        ) as seen_with_logs_until
    from changed
    where holder_id is not null

)

select * from final
