-- Every internal user with current limits; the proxy-wide budget row is flagged, not dropped.
-- User ids only the spend logs name (the request's user, else its key's owner: deleted users,
-- a logs-only source) are added with is_known false, so every id of the rollups is here.
with

users as (

    select * from {{ ref('stg_proxy__users') }}

),

attributed as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

logged_users as (

    {{ ids_only_in_logs('attributed', 'users', 'user_id') }}

),

known_users as (

    select
        user_id,
        organization_id,
        user_alias,
        user_email,
        user_role,
        budget_duration,
        max_budget_usd,
        spend_counter_usd,
        is_proxy_budget_row,
        budget_reset_at,
        created_at,
        updated_at,
        true as is_known
    from users

),

unknown_users as (

    select
        user_id,
        cast(null as {{ sql_type('varchar') }}) as organization_id,
        cast(null as {{ sql_type('varchar') }}) as user_alias,
        cast(null as {{ sql_type('varchar') }}) as user_email,
        cast(null as {{ sql_type('varchar') }}) as user_role,
        cast(null as {{ sql_type('varchar') }}) as budget_duration,
        cast(null as numeric(38, 10)) as max_budget_usd,
        cast(null as numeric(38, 10)) as spend_counter_usd,
        false as is_proxy_budget_row,
        cast(null as timestamp) as budget_reset_at,
        cast(null as timestamp) as created_at,
        cast(null as timestamp) as updated_at,
        false as is_known
    from logged_users

),

final as (

    select * from known_users
    union all
    select * from unknown_users

)

select * from final
