-- Each request once per entity it counts against: its key, team, organization, user (key
-- owner), end user and team member (team_id/user_id of the key, proxy-db.md §3.8).
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

{% set entity_columns = {
    'key': 'key_hash',
    'team': 'team_id',
    'organization': 'organization_id',
    'user': 'user_id',
    'end_user': 'end_user_id',
} %}

unioned as (

    {% for entity_type, column in entity_columns.items() %}
    select
        '{{ entity_type }}' as entity_type,
        {{ column }} as entity_id,
        request_id,
        spend_usd,
        started_at,
        started_at_local
    from spend_logs
    where {{ column }} is not null

    union all
    {% endfor %}

    select
        'team_member' as entity_type,
        team_id || '/' || user_id as entity_id,
        request_id,
        spend_usd,
        started_at,
        started_at_local
    from spend_logs
    where team_id is not null and user_id is not null

)

select * from unioned
