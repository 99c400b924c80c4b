{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        post_hook="{{ fill_spend_daily_percentiles(ref('int_spend_logs_attributed')) }}",
        **incremental_by_day('spend_date'),
    )
}}
-- depends_on: {{ ref('int_spend_attribution_versions') }}
-- Incremental: each run re-builds whole UTC days: the var incremental_rebuild_days days before the
-- latest day already built, plus every older day that received rows extracted after the last
-- build (late rows of any age) and every day of a key or team whose attribution changed since
-- (int_spend_attribution_versions), so a re-build equals a full build.
{#- On DuckDB, more rows than one batch of percentiles: the post-hook fills them. -#}
{%- set deferred = spend_daily_percentiles_deferred(ref('int_spend_logs_attributed')) %}
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}
    {% if is_incremental() %}
    {{ spend_daily_rebuild_filter(ref('int_spend_logs_attributed')) }}
    {% endif %}

),

final as (

    select
        cast(
            {{ surrogate_key([
                'spend_date', 'key_hash', 'team_id', 'organization_id', 'user_id', 'end_user_id',
                'model_group', 'provider',
            ]) }}
            as {{ sql_type('varchar') }}
        ) as spend_daily_id,
        {{ spend_daily_dimensions() }},
        {{ spend_daily_metrics(deferred=deferred) }},
        spend_date,
        min(started_at) as first_request_at,
        max(started_at) as last_request_at,
        max(extracted_at) as last_extracted_at
    from spend_logs
    group by
        spend_date,
        key_hash,
        team_id,
        organization_id,
        user_id,
        end_user_id,
        model_group,
        provider

)

select * from final
