-- The proxy's five daily aggregate tables in one shape, summed per entity kind, entity and date
-- over their key, model, provider, MCP tool and endpoint rows (never assume one row per logical
-- key: nullable unique columns let duplicates through). A missing table adds nothing.
{%- set tables = [
    ['user', 'stg_proxy__daily_user_spend', 'user_id'],
    ['team', 'stg_proxy__daily_team_spend', 'team_id'],
    ['organization', 'stg_proxy__daily_organization_spend', 'organization_id'],
    ['end_user', 'stg_proxy__daily_end_user_spend', 'end_user_id'],
    ['tag', 'stg_proxy__daily_tag_spend', 'tag'],
] %}
with
{% for entity_type, model, id_column in tables %}
{{ entity_type }}_days as (

    select
        '{{ entity_type }}' as entity_type,
        {{ id_column }} as entity_id,
        spend_date,
        cast(count(*) as bigint) as daily_row_count,
        cast(sum(request_count) as bigint) as request_count,
        cast(sum(successful_request_count) as bigint) as successful_request_count,
        cast(sum(failed_request_count) as bigint) as failed_request_count,
        cast(sum(spend_units) as bigint) as spend_units,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        min(created_at) as first_created_at,
        max(updated_at) as last_updated_at
    from {{ ref(model) }}
    group by
        {{ id_column }},
        spend_date

),
{% endfor %}
unioned as (
    {% for entity_type, model, id_column in tables %}
    select * from {{ entity_type }}_days
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

final as (

    select
        {{ surrogate_key(['entity_type', 'entity_id', 'spend_date']) }} as entity_day_id,
        entity_type,
        entity_id,
        daily_row_count,
        request_count,
        successful_request_count,
        failed_request_count,
        spend_units,
        prompt_tokens,
        completion_tokens,
        spend_date,
        first_created_at,
        last_updated_at
    from unioned

)

select * from final
