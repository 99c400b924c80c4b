-- One row per request and distinct tag, with the request's spend and tokens allocated across
-- its tags so that sums over tags equal the request totals exactly: each tag gets the integer
-- share floor(amount / tag_count) in units of 1e-10 USD (tokens: whole tokens) and the first tag
-- in alphabetical order also gets the remainder. Requests without tags get one row with a null
-- tag carrying everything.
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

tag_lists as (

    select * from {{ ref('int_request_tag_lists') }}

),

request_tags as (

    select
        spend_logs.*,
        tag_lists.tag,
        coalesce(tag_lists.tag_position, 1) as tag_position,
        coalesce(tag_lists.tag_count, 1) as tag_count
    from spend_logs
    left join tag_lists
        on spend_logs.request_tags_json = tag_lists.request_tags_json

),

allocated as (

    select
        request_tags.*,
        {{ even_share(
            'request_tags.spend_units', 'request_tags.tag_count', 'request_tags.tag_position'
        ) }} as allocated_spend_units,
        {{ even_share(
            'request_tags.prompt_tokens', 'request_tags.tag_count', 'request_tags.tag_position'
        ) }} as allocated_prompt_tokens,
        {{ even_share(
            'request_tags.completion_tokens', 'request_tags.tag_count', 'request_tags.tag_position'
        ) }} as allocated_completion_tokens,
        {{ even_share(
            'request_tags.total_tokens', 'request_tags.tag_count', 'request_tags.tag_position'
        ) }} as allocated_total_tokens
    from request_tags

),

final as (

    select
        request_id,
        key_hash,
        user_id,
        team_id,
        organization_id,
        end_user_id,
        tag,
        model_group,
        provider,
        spend_usd,
        spend_units,
        {{ units_to_money('allocated_spend_units') }} as allocated_spend_usd,
        allocated_spend_units,
        prompt_tokens,
        completion_tokens,
        total_tokens,
        allocated_prompt_tokens,
        allocated_completion_tokens,
        allocated_total_tokens,
        latency_ms,
        time_to_first_token_ms,
        tag_position,
        tag_count,
        request_status,
        is_cache_hit,
        is_failure,
        spend_date,
        started_at,
        extracted_at
    from allocated

)

select * from final
