{%- set default_id = var('max_end_user_budget_id') -%}
{%- set default_budget_id = (
    "'" ~ default_id ~ "'" if default_id is not none else 'cast(null as ' ~ sql_type('varchar') ~ ')'
) -%}
-- Every live spend counter the proxy keeps, with the duration that resets it (proxy-db.md §4.3):
-- keys (own duration, else their budget row's), users, teams, end users, team members, and tags
-- and projects with a budget row (their budget row's; end users without one follow the default
-- budget row when configured).
-- Organization counters are never reset, so they compare with all-time log spend.
with

holders as (

    select * from {{ ref('int_budget_holders_unioned') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

final as (

    select
        holders.entity_type,
        holders.entity_id,
        holders.entity_alias,
        coalesce(holders.budget_duration, budgets.budget_duration) as counter_duration,
        holders.spend_counter_usd,
        holders.entity_type = 'organization' as is_never_reset,
        -- The row holding the duration: a key's own row while it has a duration, teams',
        -- users' and organizations' own rows, else the budget row.
        case
            when holders.budget_duration is not null then holders.created_at
            when holders.entity_type in ('team', 'user', 'organization') then holders.created_at
            else budgets.created_at
        end as anchor_at,
        -- Keys, teams and users record their own reset; the others their budget row's.
        case
            when holders.entity_type in ('key', 'team', 'user') then holders.budget_reset_at
            else budgets.budget_reset_at
        end as budget_reset_at
    from holders
    -- Organization counters are never reset: no budget row applies. End users without a budget
    -- row follow the default one (var max_end_user_budget_id) when set.
    left join budgets
        on
            holders.entity_type != 'organization'
            and budgets.budget_id = coalesce(
                holders.budget_id,
                case when holders.entity_type = 'end_user' then {{ default_budget_id }} end
            )

)

select * from final
