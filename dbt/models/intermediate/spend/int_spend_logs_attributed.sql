-- Spend logs with their attribution completed through the key (live or deleted): the key's
-- owner and organization fill columns an older proxy left empty; the project is the one the
-- request's metadata names (user_api_key_project_id), else the key's.
with

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

keys as (

    select * from {{ ref('int_keys_unioned') }}

),

teams as (

    select * from {{ ref('int_teams_unioned') }}

),

key_rotations as (

    select * from {{ ref('int_key_rotations') }}

),

attributed as (

    select
        ----------  ids
        spend_logs.request_id,
        spend_logs.key_hash,
        coalesce(key_rotations.key_identity, spend_logs.key_hash) as key_identity,
        coalesce(spend_logs.user_id, keys.user_id) as user_id,
        spend_logs.team_id,
        coalesce(
            spend_logs.organization_id, keys.organization_id, teams.organization_id
        ) as organization_id,
        spend_logs.end_user_id,
        coalesce(spend_logs.project_id_at_request, keys.project_id) as project_id,
        spend_logs.model_id,

        ----------  strings
        spend_logs.call_type,
        spend_logs.model,
        spend_logs.model_group,
        spend_logs.provider,
        spend_logs.request_status,
        spend_logs.error_class,
        spend_logs.error_code,
        spend_logs.request_tags_json,

        ----------  numerics
        spend_logs.spend_usd,
        spend_logs.spend_units,
        spend_logs.prompt_tokens,
        spend_logs.completion_tokens,
        spend_logs.total_tokens,
        coalesce(
            spend_logs.request_duration_ms,
            {{ milliseconds_between('spend_logs.started_at', 'spend_logs.ended_at') }}
        ) as latency_ms,
        case
            when
                spend_logs.completion_started_at is not null
                and spend_logs.completion_started_at <> spend_logs.ended_at
                then
                    {{ milliseconds_between(
                        'spend_logs.started_at', 'spend_logs.completion_started_at'
                    ) }}
        end as time_to_first_token_ms,

        ----------  booleans
        spend_logs.is_cache_hit,
        spend_logs.is_failure,

        ----------  dates
        cast(spend_logs.started_at as date) as spend_date,

        ----------  timestamps
        spend_logs.started_at,
        spend_logs.ended_at,
        spend_logs.extracted_at,
        {{ utc_to_local('spend_logs.started_at') }} as started_at_local

    from spend_logs
    left join keys
        on spend_logs.key_hash = keys.key_hash
    left join teams
        on spend_logs.team_id = teams.team_id
    left join key_rotations
        on spend_logs.key_hash = key_rotations.key_hash

)

select * from attributed
