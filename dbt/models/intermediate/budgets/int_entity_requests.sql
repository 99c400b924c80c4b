-- Each request once per entity it counts against: its key, team, organization, user (key
-- owner), end user and team member (team_id/user_id of the key, proxy-db.md §3.8). One scan of
-- the spend logs crossed with the six entity kinds (not six scans).
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

entity_kinds as (

    {% for entity_type in ['key', 'team', 'organization', 'user', 'end_user', 'team_member'] %}
    select '{{ entity_type }}' as entity_type
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

fanned_out as (

    select
        entity_kinds.entity_type,
        case entity_kinds.entity_type
            when 'key' then spend_logs.key_hash
            when 'team' then spend_logs.team_id
            when 'organization' then spend_logs.organization_id
            when 'user' then spend_logs.user_id
            when 'end_user' then spend_logs.end_user_id
            when 'team_member' then spend_logs.team_id || '/' || spend_logs.user_id
        end as entity_id,
        spend_logs.request_id,
        spend_logs.spend_usd,
        spend_logs.spend_units,
        spend_logs.started_at,
        spend_logs.started_at_local
    from spend_logs
    cross join entity_kinds

)

select * from fanned_out
where entity_id is not null
