-- Each request once per entity it counts against: its key, team, organization, user (key
-- owner), end user and team member (team_id/user_id of the key, proxy-db.md §3.8), its key's
-- project when that project has a budget row, and each distinct budgeted tag it carries. One
-- scan of the spend logs crossed with the seven entity kinds (not seven scans), plus the requests
-- whose tag list holds a tag with a budget: a request with several such tags counts in full for
-- each of them (no split, unlike fct_spend_by_tag_daily).
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

tag_lists as (

    select * from {{ ref('int_request_tag_lists') }}

),

holders as (

    select * from {{ ref('int_budget_holders_unioned') }}

),

-- Projects with a budget row: requests of other projects' keys get no project row.
budgeted_projects as (

    select entity_id as project_id
    from holders
    where entity_type = 'project'

),

entity_kinds as (

    {% for entity_type in [
        'key', 'team', 'organization', 'user', 'end_user', 'team_member', 'project'
    ] %}
    select '{{ entity_type }}' as entity_type
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

fanned_out as (

    select
        entity_kinds.entity_type,
        case entity_kinds.entity_type
            when 'key' then spend_logs.key_identity
            when 'team' then spend_logs.team_id
            when 'organization' then spend_logs.organization_id
            when 'user' then spend_logs.user_id
            when 'end_user' then spend_logs.end_user_id
            when 'team_member' then spend_logs.team_id || '/' || spend_logs.user_id
            when 'project' then budgeted_projects.project_id
        end as entity_id,
        spend_logs.request_id,
        spend_logs.spend_usd,
        spend_logs.spend_units,
        spend_logs.started_at,
        spend_logs.started_at_local,
        spend_logs.extracted_at
    from spend_logs
    left join budgeted_projects
        on spend_logs.project_id = budgeted_projects.project_id
    cross join entity_kinds

),

-- The distinct tag lists holding a tag with a budget row, one row per list and such tag
-- (tags without a budget never enter: the view does not grow with unbudgeted tags).
budgeted_tag_lists as (

    select
        tag_lists.request_tags_json,
        tag_lists.tag
    from tag_lists
    inner join holders
        on
            holders.entity_type = 'tag'
            and tag_lists.tag = holders.entity_id

),

tagged as (

    select
        'tag' as entity_type,
        budgeted_tag_lists.tag as entity_id,
        spend_logs.request_id,
        spend_logs.spend_usd,
        spend_logs.spend_units,
        spend_logs.started_at,
        spend_logs.started_at_local,
        spend_logs.extracted_at
    from spend_logs
    inner join budgeted_tag_lists
        on spend_logs.request_tags_json = budgeted_tag_lists.request_tags_json

),

final as (

    select * from fanned_out
    where entity_id is not null

    union all

    select * from tagged

)

select * from final
