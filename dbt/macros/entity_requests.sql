{#- The body of int_entity_requests: each request once per entity it counts against (that
    model describes it). With spend_logs_filter, a condition on int_spend_logs_attributed's
    columns, only the requests it selects, filtered before they fan out to their entities
    (int_entity_spend_buckets re-builds its days so: a filter on the view's output would fan out
    every request first). -#}
{% macro entity_requests(spend_logs_filter=none) %}
{%- set request_columns = [
    'request_id', 'spend_usd', 'spend_units', 'started_at', 'started_at_local', 'extracted_at',
] %}
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}
    {%- if spend_logs_filter %}
    where {{ spend_logs_filter }}
    {%- endif %}

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
        {%- for column in request_columns %}
        spend_logs.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
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
        {%- for column in request_columns %}
        spend_logs.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
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
{%- endmacro %}
