{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        post_hook="{{ fill_spend_daily_percentiles(ref('int_request_tags_allocated'), tagged=true) }}",
        **incremental_by_day('spend_date'),
    )
}}
-- depends_on: {{ ref('int_spend_attribution_versions') }}
-- Spend per request tag. Multi-tag rule: a request with n distinct tags appears under each of
-- them; allocated_* columns split its spend (units of 1e-10 USD) and tokens evenly, the
-- remainder going to its alphabetically first tag, so sums of allocated_* over tags equal the
-- request totals exactly. spend_usd, request_count and the unallocated token columns count every
-- request carrying the tag in full (a tag's own view; not additive across tags). Requests
-- without tags are one row with a null tag.
{#- On DuckDB, more rows than one batch of percentiles: the post-hook fills them. -#}
{%- set deferred = spend_daily_percentiles_deferred(ref('int_request_tags_allocated')) %}
with

request_tags as (

    select * from {{ ref('int_request_tags_allocated') }}
    {% if is_incremental() %}
    {{ spend_daily_rebuild_filter(ref('int_request_tags_allocated')) }}
    {% endif %}

),

final as (

    select
        cast(
            {{ surrogate_key([
                'spend_date', 'tag', 'key_hash', 'team_id', 'organization_id', 'user_id',
                'end_user_id', 'model_group', 'provider',
            ]) }}
            as {{ sql_type('varchar') }}
        ) as spend_by_tag_daily_id,
        {{ spend_daily_dimensions(tagged=true) }},
        {{ spend_daily_metrics(allocated=true, deferred=deferred) }},
        tag is null as is_untagged,
        spend_date,
        min(started_at) as first_request_at,
        max(started_at) as last_request_at,
        max(extracted_at) as last_extracted_at
    from request_tags
    group by
        spend_date,
        tag,
        key_hash,
        team_id,
        organization_id,
        user_id,
        end_user_id,
        model_group,
        provider

)

select * from final
