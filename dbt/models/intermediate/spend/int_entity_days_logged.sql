-- The spend logs rolled up the way the proxy fills its daily aggregate tables, per entity kind,
-- entity and UTC date of startTime, from the same columns the proxy's payload carries: user rows
-- for every request (null user included), team and organization rows per logged id (null kept
-- here; fct_daily_spend_reconciliation drops them when the proxy writes none), end-user rows only
-- with an end user, and tag rows for every element of the request's request_tags with its full
-- cost, a repeated tag as often as it occurs (the allocated split over distinct tags of
-- int_request_tags_allocated kept beside it). A request is a failure when its status is
-- 'failure', a success otherwise, as the proxy counts it.
{%- set id_kinds = [
    ['user', 'user_id'],
    ['team', 'team_id'],
    ['organization', 'organization_id'],
    ['end_user', 'end_user_id'],
] %}
with

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

request_tags as (

    select * from {{ ref('int_request_tags_allocated') }}

),

tag_lists as (

    select * from {{ ref('int_request_tag_lists') }}

),

-- One pass over the logs: the few combinations of ids per day.
id_groups as (

    select
        user_id,
        team_id,
        organization_id,
        end_user_id,
        cast(started_at as date) as spend_date,
        count(*) as request_count,
        sum(case when is_failure then 0 else 1 end) as successful_request_count,
        sum(case when is_failure then 1 else 0 end) as failed_request_count,
        sum(spend_units) as spend_units,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        min(started_at) as first_request_at,
        max(started_at) as last_request_at
    from spend_logs
    group by
        user_id,
        team_id,
        organization_id,
        end_user_id,
        cast(started_at as date)

),

tag_list_groups as (

    select
        request_tags_json,
        cast(started_at as date) as spend_date,
        count(*) as request_count,
        sum(case when is_failure then 0 else 1 end) as successful_request_count,
        sum(case when is_failure then 1 else 0 end) as failed_request_count,
        sum(spend_units) as spend_units,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        min(started_at) as first_request_at,
        max(started_at) as last_request_at
    from spend_logs
    where request_tags_json is not null
    group by
        request_tags_json,
        cast(started_at as date)

),

-- Every occurrence of a tag adds the request in full, as the proxy's loop over request_tags does.
tag_days as (

    select
        tag_lists.tag,
        tag_list_groups.spend_date,
        sum(tag_list_groups.request_count * tag_lists.tag_occurrences) as request_count,
        sum(
            tag_list_groups.successful_request_count * tag_lists.tag_occurrences
        ) as successful_request_count,
        sum(
            tag_list_groups.failed_request_count * tag_lists.tag_occurrences
        ) as failed_request_count,
        sum(tag_list_groups.spend_units * tag_lists.tag_occurrences) as spend_units,
        sum(tag_list_groups.prompt_tokens * tag_lists.tag_occurrences) as prompt_tokens,
        sum(
            tag_list_groups.completion_tokens * tag_lists.tag_occurrences
        ) as completion_tokens,
        min(tag_list_groups.first_request_at) as first_request_at,
        max(tag_list_groups.last_request_at) as last_request_at
    from tag_list_groups
    inner join tag_lists
        on tag_list_groups.request_tags_json = tag_lists.request_tags_json
    group by
        tag_lists.tag,
        tag_list_groups.spend_date

),

tag_allocations as (

    select
        tag,
        cast(started_at as date) as spend_date,
        sum(allocated_spend_units) as allocated_spend_units
    from request_tags
    where tag is not null
    group by
        tag,
        cast(started_at as date)

),

entity_groups as (
    {% for entity_type, id_column in id_kinds %}
    select
        '{{ entity_type }}' as entity_type,
        {{ id_column }} as entity_id,
        spend_date,
        request_count,
        successful_request_count,
        failed_request_count,
        spend_units,
        cast(null as bigint) as allocated_spend_units,
        prompt_tokens,
        completion_tokens,
        first_request_at,
        last_request_at
    from id_groups
    {%- if entity_type == 'end_user' %}
    where end_user_id is not null
    {%- endif %}

    union all
    {% endfor %}
    select
        'tag' as entity_type,
        tag_days.tag as entity_id,
        tag_days.spend_date,
        tag_days.request_count,
        tag_days.successful_request_count,
        tag_days.failed_request_count,
        tag_days.spend_units,
        tag_allocations.allocated_spend_units,
        tag_days.prompt_tokens,
        tag_days.completion_tokens,
        tag_days.first_request_at,
        tag_days.last_request_at
    from tag_days
    left join tag_allocations
        on
            tag_days.tag = tag_allocations.tag
            and tag_days.spend_date = tag_allocations.spend_date

),

final as (

    select
        {{ surrogate_key(['entity_type', 'entity_id', 'spend_date']) }} as entity_day_id,
        entity_type,
        entity_id,
        cast(sum(request_count) as bigint) as request_count,
        cast(sum(successful_request_count) as bigint) as successful_request_count,
        cast(sum(failed_request_count) as bigint) as failed_request_count,
        cast(sum(spend_units) as bigint) as spend_units,
        cast(sum(allocated_spend_units) as bigint) as allocated_spend_units,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        spend_date,
        min(first_request_at) as first_request_at,
        max(last_request_at) as last_request_at
    from entity_groups
    group by
        entity_type,
        entity_id,
        spend_date

)

select * from final
