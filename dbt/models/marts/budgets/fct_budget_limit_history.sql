-- Every version of every budget-bearing row's limits, one row per version, with the period it
-- was in force: from valid_from (null: since ever) to valid_to (null: still in force, or the
-- row's deletion). Versions come from the warehouse's own snapshots and, where the proxy keeps
-- an audit log, from its 'updated' rows (int_budget_limit_history). A deleted budget row keeps
-- its versions, ending in one with is_deleted.
with

limit_history as (

    select * from {{ ref('int_budget_limit_history') }}

),

final as (

    select
        version_id as budget_limit_version_id,
        case source_table
            when 'verification_tokens' then 'key'
            when 'teams' then 'team'
            when 'users' then 'user'
            when 'budgets' then 'budget_row'
            when 'organizations' then 'organization'
            when 'end_users' then 'end_user'
            when 'team_memberships' then 'team_member'
            when 'tags' then 'tag'
            when 'projects' then 'project'
            else source_table
        end as entity_type,
        entity_id,
        budget_id,
        budget_duration,
        cast(soft_budget_usd as numeric(38, 10)) as soft_budget_usd,
        cast(max_budget_usd as numeric(38, 10)) as max_budget_usd,
        model_max_budget_json,
        budget_limits_json,
        is_deleted,
        valid_from,
        valid_to,
        observed_at,
        evidence
    from limit_history

)

select * from final
