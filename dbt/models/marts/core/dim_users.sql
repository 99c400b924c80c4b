-- Every internal user with current limits; the proxy-wide budget row is flagged, not dropped.
with

users as (

    select * from {{ ref('stg_proxy__users') }}

),

final as (

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
        updated_at
    from users

)

select * from final
