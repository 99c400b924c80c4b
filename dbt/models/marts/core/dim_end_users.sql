{#- The proxy-wide default (vars max_end_user_budget_id, else max_end_user_budget) as SQL. -#}
{%- set default_id = var('max_end_user_budget_id') -%}
{%- set default_max = var('max_end_user_budget') -%}
{%- set default_budget_id = (
    "'" ~ default_id ~ "'" if default_id is not none else 'cast(null as ' ~ sql_type('varchar') ~ ')'
) -%}
{%- set default_max_budget = (
    'cast(' ~ default_max ~ ' as numeric(38, 10))'
    if default_id is none and default_max is not none
    else 'cast(null as numeric(38, 10))'
) -%}
{%- set has_default = 'true' if default_id is not none or default_max is not none else 'false' -%}
-- Every end user (customer): the EndUserTable rows plus ids only the spend logs know, with the
-- budget that applies (their own budget row, else the configured proxy-wide default).
with

end_users as (

    select * from {{ ref('stg_proxy__end_users') }}

),

budgets as (

    select * from {{ ref('stg_proxy__budgets') }}

),

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

logged_end_users as (

    select distinct end_user_id
    from spend_logs
    where end_user_id is not null

),

all_end_users as (

    select
        end_user_id,
        budget_id,
        end_user_alias,
        spend_counter_usd,
        is_blocked,
        true as is_known
    from end_users

    union all

    select
        logged_end_users.end_user_id,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        cast(null as {{ sql_type('varchar') }}) as end_user_alias,
        cast(null as numeric(38, 10)) as spend_counter_usd,
        false as is_blocked,
        false as is_known
    from logged_end_users
    left join end_users
        on logged_end_users.end_user_id = end_users.end_user_id
    where end_users.end_user_id is null

),

final as (

    select
        all_end_users.end_user_id,
        coalesce(all_end_users.budget_id, {{ default_budget_id }}) as effective_budget_id,
        all_end_users.end_user_alias,
        case
            when all_end_users.budget_id is not null then 'end_user_budget'
            when {{ has_default }} then 'end_user_default'
        end as budget_source,
        budgets.budget_duration,
        coalesce(
            budgets.max_budget_usd,
            case
                when all_end_users.budget_id is null then {{ default_max_budget }}
            end
        ) as max_budget_usd,
        budgets.soft_budget_usd,
        all_end_users.spend_counter_usd,
        all_end_users.is_blocked,
        all_end_users.is_known
    from all_end_users
    left join budgets
        on coalesce(all_end_users.budget_id, {{ default_budget_id }}) = budgets.budget_id

)

select * from final
