{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='spend_date',
        on_schema_change='fail',
    )
}}
-- Spend per request tag. Multi-tag rule: a request with n distinct tags appears under each of
-- them; allocated_* columns split its spend (units of 1e-10 USD) and tokens evenly, the
-- remainder going to its alphabetically first tag, so sums of allocated_* over tags equal the
-- request totals exactly. spend_usd, request_count and the unallocated token columns count every
-- request carrying the tag in full (a tag's own view; not additive across tags). Requests
-- without tags are one row with a null tag.
with

request_tags as (

    select * from {{ ref('int_request_tags_allocated') }}
    {% if is_incremental() %}
    where
        spend_date >= (
            select {{ add_days('max(spend_date)', '-' ~ var('incremental_rebuild_days')) }}
            from {{ this }}
        )
        or spend_date in (
            select late.spend_date
            from {{ ref('int_request_tags_allocated') }} as late
            where late.extracted_at > (
                select max(built.last_extracted_at) as watermark from {{ this }} as built
            )
        )
    {% endif %}

),

daily as (

    select
        spend_date,
        tag,
        key_hash,
        team_id,
        organization_id,
        user_id,
        end_user_id,
        model_group,
        provider,
        count(*) as request_count,
        sum(case when request_status = 'success' then 1 else 0 end) as successful_request_count,
        sum(case when is_failure then 1 else 0 end) as failed_request_count,
        sum(case when is_cache_hit then 1 else 0 end) as cache_hit_count,
        sum(spend_usd) as spend_usd,
        sum(allocated_spend_usd) as allocated_spend_usd,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(total_tokens) as total_tokens,
        sum(allocated_prompt_tokens) as allocated_prompt_tokens,
        sum(allocated_completion_tokens) as allocated_completion_tokens,
        sum(allocated_total_tokens) as allocated_total_tokens,
        percentile_cont(0.5) within group (order by latency_ms) as latency_p50_ms,
        percentile_cont(0.95) within group (order by latency_ms) as latency_p95_ms,
        percentile_cont(0.5) within group (order by time_to_first_token_ms) as ttft_p50_ms,
        percentile_cont(0.95) within group (order by time_to_first_token_ms) as ttft_p95_ms,
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

),

final as (

    select
        {{ surrogate_key([
            'spend_date', 'tag', 'key_hash', 'team_id', 'organization_id', 'user_id',
            'end_user_id', 'model_group', 'provider',
        ]) }} as spend_by_tag_daily_id,
        key_hash,
        team_id,
        organization_id,
        user_id,
        end_user_id,
        tag,
        model_group,
        provider,
        cast(request_count as bigint) as request_count,
        cast(successful_request_count as bigint) as successful_request_count,
        cast(failed_request_count as bigint) as failed_request_count,
        cast(cache_hit_count as bigint) as cache_hit_count,
        cast(spend_usd as numeric(38, 10)) as spend_usd,
        cast(allocated_spend_usd as numeric(38, 10)) as allocated_spend_usd,
        cast(prompt_tokens as bigint) as prompt_tokens,
        cast(completion_tokens as bigint) as completion_tokens,
        cast(total_tokens as bigint) as total_tokens,
        cast(allocated_prompt_tokens as bigint) as allocated_prompt_tokens,
        cast(allocated_completion_tokens as bigint) as allocated_completion_tokens,
        cast(allocated_total_tokens as bigint) as allocated_total_tokens,
        cast(latency_p50_ms as numeric(18, 3)) as latency_p50_ms,
        cast(latency_p95_ms as numeric(18, 3)) as latency_p95_ms,
        cast(ttft_p50_ms as numeric(18, 3)) as ttft_p50_ms,
        cast(ttft_p95_ms as numeric(18, 3)) as ttft_p95_ms,
        tag is null as is_untagged,
        spend_date,
        first_request_at,
        last_request_at,
        last_extracted_at
    from daily

)

select * from final
