{#- The names of the grouping columns of the daily spend facts besides spend_date, in contract
    order; with tagged=true the tag facts' tag between the end user and the model group. -#}
{% macro spend_daily_dimension_names(tagged=false) %}
    {%- set columns = ['key_hash', 'team_id', 'organization_id', 'user_id', 'end_user_id'] %}
    {%- if tagged %}{% do columns.append('tag') %}{% endif %}
    {{ return(columns + ['model_group', 'provider']) }}
{% endmacro %}

{#- The grouping columns of the daily spend facts besides spend_date (spend_daily_dimension_names),
    cast to the contract's varchar (PostgreSQL would otherwise give text, which an incremental
    build's schema check rejects). -#}
{% macro spend_daily_dimensions(tagged=false) %}
    {%- for column in spend_daily_dimension_names(tagged) %}
        cast({{ column }} as {{ sql_type('varchar') }}) as {{ column }}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- The request metrics of the daily spend facts, aggregated over a group of int_spend_logs_attributed
    (or int_request_tags_allocated) rows and cast to their contract types, in contract order:
    counts, spend, tokens, then latency and time-to-first-token percentiles (null with
    deferred=true: the post-hook fill_spend_daily_percentiles fills them).
    With allocated=true the tag facts' evenly split spend and tokens follow their full
    counterparts. -#}
{% macro spend_daily_metrics(allocated=false, deferred=false) %}
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
        {{ spend_daily_percentiles(deferred=deferred) }}
{%- endmacro %}

{#- The incremental filter of the daily spend facts on a model with spend_date and extracted_at:
    the var incremental_rebuild_days whole UTC days before the latest day already built, plus
    every older day that received rows extracted after the last build (late rows of any age),
    plus every day built with a key or team whose attribution (owner, organization) changed
    since (int_spend_attribution_versions; the model names it in a depends_on comment). -#}
{% macro spend_daily_rebuild_filter(relation) %}
    {%- set watermark -%}
        (select max(built_rows.last_extracted_at) as watermark from {{ this }} as built_rows)
    {%- endset %}
    where
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

{#- The latency and time-to-first-token percentiles of the daily spend facts over a group of
    requests, cast to their contract types; deferred=true gives nulls of those types. -#}
{% macro spend_daily_percentiles(deferred=false) %}
    {%- for column, expression in [
        ('latency_p50_ms', percentile_cont('latency_ms', 0.5, [0.5, 0.95])),
        ('latency_p95_ms', percentile_cont('latency_ms', 0.95, [0.5, 0.95])),
        ('ttft_p50_ms', percentile_cont('time_to_first_token_ms', 0.5, [0.5, 0.95])),
        ('ttft_p95_ms', percentile_cont('time_to_first_token_ms', 0.95, [0.5, 0.95])),
    ] %}
        cast({{ 'null' if deferred else expression }} as numeric(18, 3)) as {{ column }}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- Whether a build of the daily spend facts over `relation` leaves its percentiles to the
    post-hook fill_spend_daily_percentiles: on DuckDB, whose percentile states cannot spill to
    disk, when the values of the rows to aggregate (those of the days spend_daily_rebuild_filter
    selects, on an incremental build) would fill more than a quarter of its memory limit
    (spend_daily_percentile_rows). Otherwise the model computes them in its one aggregate
    (dispatched per adapter; PostgreSQL and Spark sort on disk and always do). -#}
{% macro spend_daily_percentiles_deferred(relation) %}
    {{ return(adapter.dispatch('spend_daily_percentiles_deferred', 'spend_warehouse')(relation)) }}
{% endmacro %}

{% macro default__spend_daily_percentiles_deferred(relation) %}
    {{ return(false) }}
{% endmacro %}

{% macro duckdb__spend_daily_percentiles_deferred(relation) %}
    {%- if not execute or load_relation(relation) is none %}{{ return(false) }}{% endif %}
    {%- set rows -%}
        select count(*) as row_count from {{ relation }}
        {%- if is_incremental() %}
        {{ spend_daily_rebuild_filter(relation) }}
        {%- endif %}
    {%- endset %}
    {{ return(run_query(rows).columns[0].values()[0] > spend_daily_percentile_rows('deferral')) }}
{% endmacro %}

{#- A number of rows of percentile values on DuckDB, for `use` 'deferral' or 'batch': var
    percentile_batch_rows, or unset, the rows whose values (about 50 bytes a row) fill a share of
    DuckDB's memory limit. A build defers its percentiles beyond a quarter; the post-hook fills
    them in batches of an eighth, which leaves room for the update itself under small limits. -#}
{% macro spend_daily_percentile_rows(use) %}
    {%- if var('percentile_batch_rows') is not none %}{{ return(var('percentile_batch_rows')) }}{% endif %}
    {%- set share = {'deferral': 0.25, 'batch': 0.125}[use] %}
    {%- set limit = run_query("select current_setting('memory_limit')").columns[0].values()[0].split(' ') %}
    {%- set unit = {'bytes': 1, 'KiB': 1024, 'MiB': 1024 ** 2, 'GiB': 1024 ** 3, 'TiB': 1024 ** 4} %}
    {{ return((limit[0] | float * unit[limit[1]] * share / 50) | int) }}
{% endmacro %}

{#- Post-hook of the daily spend facts: fills the percentiles the model left null
    (spend_daily_percentiles_deferred), one update per batch of whole days of at most
    spend_daily_percentile_rows('batch') requests (request-tag rows for the tag facts), so DuckDB
    holds one batch's values at a time. Runs in the model's transaction and emits no SQL of its
    own; with nothing left null it only looks. Dispatched as spend_daily_percentiles_deferred is:
    other adapters never defer, so they have nothing to fill. -#}
{% macro fill_spend_daily_percentiles(relation, tagged=false) %}
    {{ return(adapter.dispatch('fill_spend_daily_percentiles', 'spend_warehouse')(relation, tagged)) }}
{% endmacro %}

{% macro default__fill_spend_daily_percentiles(relation, tagged) %}
    {{ return('') }}
{% endmacro %}

{% macro duckdb__fill_spend_daily_percentiles(relation, tagged) %}
    {%- if not execute %}{{ return('') }}{% endif %}
    {%- set pending -%}
        select cast(spend_date as varchar) as spend_date, sum(request_count) as request_rows
        from {{ this }}
        where latency_p50_ms is null
        group by spend_date
        order by spend_date
    {%- endset %}
    {%- set batch_rows = spend_daily_percentile_rows('batch') %}
    {%- set batches = [] %}
    {%- set current = {'days': [], 'rows': 0} %}
    {%- for day, rows in run_query(pending).rows %}
        {%- if current.days and current.rows + rows > batch_rows %}
            {%- do batches.append(current.days) %}
            {%- do current.update({'days': [], 'rows': 0}) %}
        {%- endif %}
        {%- do current.days.append(day) %}
        {%- do current.update({'rows': current.rows + rows}) %}
    {%- endfor %}
    {%- if current.days %}{% do batches.append(current.days) %}{% endif %}
    {%- set dimensions = ['spend_date'] + spend_daily_dimension_names(tagged) %}
    {%- for days in batches %}
        {%- set day_list -%}
            {%- for day in days %}cast('{{ day }}' as date){% if not loop.last %}, {% endif %}{% endfor -%}
        {%- endset %}
        {%- set fill -%}
            update {{ this }} as built
            set
                latency_p50_ms = batch.latency_p50_ms,
                latency_p95_ms = batch.latency_p95_ms,
                ttft_p50_ms = batch.ttft_p50_ms,
                ttft_p95_ms = batch.ttft_p95_ms
            from (
                select
                    {{ dimensions | join(', ') }},
                    {{ spend_daily_percentiles() }}
                from {{ relation }}
                where spend_date in ({{ day_list }})
                group by {{ dimensions | join(', ') }}
            ) as batch
            where
                built.spend_date in ({{ day_list }})
                {%- for column in dimensions %}
                and built.{{ column }} is not distinct from batch.{{ column }}
                {%- endfor %}
        {%- endset %}
        {%- do log('fill_spend_daily_percentiles: ' ~ this.identifier ~ ' batch ' ~ loop.index ~ '/' ~ batches | length ~ ' (' ~ days | length ~ ' days)', info=false) %}
        {%- do run_query(fill) %}
    {%- endfor %}
    {{ return('') }}
{% endmacro %}
