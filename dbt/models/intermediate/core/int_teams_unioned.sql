-- One row per team id: the live team, else its latest deleted copy.
with

teams as (

    select * from {{ ref('stg_proxy__teams') }}

),

deleted_teams as (

    select * from {{ ref('stg_proxy__deleted_teams') }}

),

unioned as (

    select
        team_id,
        organization_id,
        team_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        soft_budget_usd,
        spend_counter_usd,
        is_blocked,
        false as is_deleted,
        1 as source_rank,
        budget_reset_at,
        created_at,
        updated_at,
        cast(null as timestamp) as deleted_at
    from teams

    union all

    select
        team_id,
        organization_id,
        team_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        soft_budget_usd,
        spend_counter_usd,
        is_blocked,
        true as is_deleted,
        2 as source_rank,
        budget_reset_at,
        created_at,
        updated_at,
        deleted_at
    from deleted_teams

),

ranked as (

    select
        unioned.*,
        row_number() over (
            partition by unioned.team_id
            order by
                unioned.source_rank asc,
                unioned.deleted_at desc nulls last,
                unioned.updated_at desc nulls last,
                unioned.team_alias asc
        ) as team_rank
    from unioned
    where unioned.team_id is not null

),

final as (

    select
        team_id,
        organization_id,
        team_alias,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        max_budget_usd,
        soft_budget_usd,
        spend_counter_usd,
        is_blocked,
        is_deleted,
        budget_reset_at,
        created_at,
        updated_at,
        deleted_at
    from ranked
    where team_rank = 1

)

select * from final
