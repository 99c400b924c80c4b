-- Every virtual key: live keys, deleted keys (from their deletion copy) and key hashes that only
-- the spend logs still know (deleted before the proxy kept copies), named by the latest alias
-- the logs carry, so history keeps its names. Limits are the current ones. A hash a rotation
-- replaced (int_key_rotations) names the key it became in key_identity.
with

keys as (

    select * from {{ ref('int_keys_unioned') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

key_rotations as (

    select * from {{ ref('int_key_rotations') }}

),

-- Only the log rows of keys no snapshot knows are ranked (usually few).
logged_keys as (

    select
        spend_logs.key_hash,
        spend_logs.key_alias_at_request,
        spend_logs.team_id,
        spend_logs.user_id,
        row_number() over (
            partition by spend_logs.key_hash
            order by spend_logs.started_at desc, spend_logs.request_id desc
        ) as recency_rank
    from spend_logs
    left join keys
        on spend_logs.key_hash = keys.key_hash
    where spend_logs.key_hash is not null and keys.key_hash is null

),

log_only_keys as (

    select
        key_hash,
        user_id,
        team_id,
        key_alias_at_request as key_alias
    from logged_keys
    where recency_rank = 1

),

known_keys as (

    select
        keys.key_hash,
        keys.user_id,
        keys.team_id,
        keys.organization_id,
        keys.budget_id,
        keys.project_id,
        keys.key_alias,
        keys.key_name,
        keys.budget_duration,
        keys.max_budget_usd,
        budgets.soft_budget_usd,
        budgets.max_budget_usd as budget_max_budget_usd,
        keys.spend_counter_usd,
        keys.is_blocked,
        keys.is_deleted,
        true as is_known,
        keys.expires_at,
        keys.budget_reset_at,
        keys.created_at,
        keys.deleted_at
    from keys
    left join budgets
        on keys.budget_id = budgets.budget_id

),

unknown_keys as (

    select
        key_hash,
        user_id,
        team_id,
        cast(null as {{ sql_type('varchar') }}) as organization_id,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        cast(null as {{ sql_type('varchar') }}) as project_id,
        key_alias,
        cast(null as {{ sql_type('varchar') }}) as key_name,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as budget_max_budget_usd,
        cast(null as numeric(38, 10)) as spend_counter_usd,
        false as is_blocked,
        true as is_deleted,
        false as is_known,
        cast(null as timestamp) as expires_at,
        cast(null as timestamp) as budget_reset_at,
        cast(null as timestamp) as created_at,
        cast(null as timestamp) as deleted_at
    from log_only_keys

),

unioned as (

    select * from known_keys
    union all
    select * from unknown_keys

),

-- A rotated key's old hashes point at its current hash: key_identity groups one key's history.
final as (

    select
        unioned.*,
        coalesce(key_rotations.key_identity, unioned.key_hash) as key_identity,
        key_rotations.rotated_to_key_hash,
        key_rotations.rotated_at,
        key_rotations.evidence as rotation_evidence
    from unioned
    left join key_rotations
        on unioned.key_hash = key_rotations.key_hash

)

select * from final
