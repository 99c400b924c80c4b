{#- The grouping columns of the daily spend facts, in contract order and cast to the contract's
    varchar (PostgreSQL would otherwise give text, which an incremental build's schema check
    rejects); with tagged=true the tag facts' tag between the end user and the model group. -#}
{% macro spend_daily_dimensions(tagged=false) %}
    {%- set columns = ['key_hash', 'team_id', 'organization_id', 'user_id', 'end_user_id'] %}
    {%- if tagged %}{% do columns.append('tag') %}{% endif %}
    {%- do columns.extend(['model_group', 'provider']) %}
    {%- for column in columns %}
        cast({{ column }} as {{ sql_type('varchar') }}) as {{ column }}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- The request metrics of the daily spend facts, aggregated over a group of int_spend_logs_attributed
    (or int_request_tags_allocated) rows and cast to their contract types, in contract order:
    counts, spend, tokens, then latency and time-to-first-token percentiles. With allocated=true
    the tag facts' evenly split spend and tokens follow their full counterparts. -#}
{% macro spend_daily_metrics(allocated=false) %}
        cast(count(*) as bigint) as request_count,
        cast(
            sum(case when request_status = 'success' then 1 else 0 end) as bigint
        ) as successful_request_count,
        cast(sum(case when is_failure then 1 else 0 end) as bigint) as failed_request_count,
        cast(sum(case when is_cache_hit then 1 else 0 end) as bigint) as cache_hit_count,
        {{ units_to_money('sum(spend_units)') }} as spend_usd,
        {%- if allocated %}
        {{ units_to_money('sum(allocated_spend_units)') }} as allocated_spend_usd,
        {%- endif %}
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        {%- if allocated %}
        cast(sum(allocated_prompt_tokens) as bigint) as allocated_prompt_tokens,
        cast(sum(allocated_completion_tokens) as bigint) as allocated_completion_tokens,
        cast(sum(allocated_total_tokens) as bigint) as allocated_total_tokens,
        {%- endif %}
        cast(
            {{ percentile_cont('latency_ms', 0.5, [0.5, 0.95]) }} as numeric(18, 3)
        ) as latency_p50_ms,
        cast(
            {{ percentile_cont('latency_ms', 0.95, [0.5, 0.95]) }} as numeric(18, 3)
        ) as latency_p95_ms,
        cast(
            {{ percentile_cont('time_to_first_token_ms', 0.5, [0.5, 0.95]) }} as numeric(18, 3)
        ) as ttft_p50_ms,
        cast(
            {{ percentile_cont('time_to_first_token_ms', 0.95, [0.5, 0.95]) }} as numeric(18, 3)
        ) as ttft_p95_ms
{%- endmacro %}

{#- The incremental condition of the daily spend facts on a model with spend_date and extracted_at:
    the var incremental_rebuild_days whole UTC days before the latest day already built, plus
    every older day that received rows extracted after the last build (late rows of any age),
    plus every day built with a key or team whose attribution (owner, organization) changed
    since (int_spend_attribution_versions; the model names it in a depends_on comment). -#}
{% macro spend_daily_rebuild_filter(relation) %}
    {%- set watermark -%}
        (select max(built_rows.last_extracted_at) as watermark from {{ this }} as built_rows)
    {%- endset %}
        spend_date >= (
            select {{ add_days('max(spend_date)', '-' ~ var('incremental_rebuild_days')) }}
            from {{ this }}
        )
        or spend_date in (
            select late.spend_date
            from {{ relation }} as late
            where late.extracted_at > {{ watermark }}
        )
        or spend_date in (
            select built.spend_date
            from {{ this }} as built
            inner join {{ ref('int_spend_attribution_versions') }} as changed
                on
                    (changed.holder_type = 'key' and built.key_hash = changed.holder_id)
                    or (changed.holder_type = 'team' and built.team_id = changed.holder_id)
            where changed.is_change and changed.seen_with_logs_until >= {{ watermark }}
        )
{%- endmacro %}
