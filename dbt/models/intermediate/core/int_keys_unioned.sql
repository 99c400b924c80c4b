-- One row per key hash: the live key, else its latest deleted copy, so spend history keeps
-- its names after a key is deleted.
with

verification_tokens as (

    select * from {{ ref('stg_proxy__verification_tokens') }}

),

deleted_verification_tokens as (

    select * from {{ ref('stg_proxy__deleted_verification_tokens') }}

),

unioned as (

    select
        key_hash,
        user_id,
        team_id,
        organization_id,
        budget_id,
        project_id,
        key_name,
        key_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        spend_counter_usd,
        is_blocked,
        false as is_deleted,
        1 as source_rank,
        expires_at,
        budget_reset_at,
        created_at,
        updated_at,
        cast(null as timestamp) as deleted_at
    from verification_tokens

    union all

    select
        key_hash,
        user_id,
        team_id,
        organization_id,
        budget_id,
        project_id,
        key_name,
        key_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        spend_counter_usd,
        is_blocked,
        true as is_deleted,
        2 as source_rank,
        expires_at,
        budget_reset_at,
        created_at,
        updated_at,
        deleted_at
    from deleted_verification_tokens

),

ranked as (

    select
        unioned.*,
        row_number() over (
            partition by unioned.key_hash
            order by
                unioned.source_rank asc,
                unioned.deleted_at desc nulls last,
                unioned.updated_at desc nulls last,
                unioned.key_alias asc
        ) as key_rank
    from unioned
    where unioned.key_hash is not null

),

final as (

    select
        key_hash,
        user_id,
        team_id,
        organization_id,
        budget_id,
        project_id,
        key_name,
        key_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        spend_counter_usd,
        is_blocked,
        is_deleted,
        expires_at,
        budget_reset_at,
        created_at,
        updated_at,
        deleted_at
    from ranked
    where key_rank = 1

)

select * from final
