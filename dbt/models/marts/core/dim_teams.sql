-- Every team: live, deleted (from the deletion copy), and team ids only the spend logs still
-- know, named by the latest team alias the logs carry. Limits are the current ones.
with

teams as (

    select * from {{ ref('int_teams_unioned') }}

),

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

-- Only the log rows of teams no snapshot knows are ranked (usually none).
logged_teams as (

    select
        spend_logs.team_id,
        spend_logs.team_alias_at_request,
        row_number() over (
            partition by spend_logs.team_id
            order by spend_logs.started_at desc, spend_logs.request_id desc
        ) as recency_rank
    from spend_logs
    left join teams
        on spend_logs.team_id = teams.team_id
    where spend_logs.team_id is not null and teams.team_id is null

),

known_teams as (

    select
        team_id,
        organization_id,
        team_alias,
        budget_duration,
        max_budget_usd,
        soft_budget_usd,
        spend_counter_usd,
        is_blocked,
        is_deleted,
        true as is_known,
        budget_reset_at,
        created_at,
        deleted_at
    from teams

),

unknown_teams as (

    select
        logged_teams.team_id,
        cast(null as {{ sql_type('varchar') }}) as organization_id,
        logged_teams.team_alias_at_request as team_alias,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as numeric(38, 10)) as soft_budget_usd,
        cast(null as numeric(38, 10)) as spend_counter_usd,
        false as is_blocked,
        true as is_deleted,
        false as is_known,
        cast(null as timestamp) as budget_reset_at,
        cast(null as timestamp) as created_at,
        cast(null as timestamp) as deleted_at
    from logged_teams
    where logged_teams.recency_rank = 1

),

final as (

    select * from known_teams
    union all
    select * from unknown_teams

)

select * from final
