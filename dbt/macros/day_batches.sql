{#- The days of `relation` (those its `predicate` keeps, when given) in consecutive batches of
    whole days of at most var percentile_batch_rows rows each (a larger day is a batch of its
    own): a list of [first day, last day] pairs, or [none] for one batch of every day. Queries
    that take percentiles build one aggregate per batch, so DuckDB, whose percentile states
    cannot spill to disk, holds one batch's values at a time (dispatched per adapter; PostgreSQL
    and Spark sort on disk and take one batch). -#}
{% macro day_batches(relation, day_column, predicate=none) %}
    {{ return(adapter.dispatch('day_batches', 'spend_warehouse')(relation, day_column, predicate)) }}
{% endmacro %}

{% macro default__day_batches(relation, day_column, predicate) %}
    {{ return([none]) }}
{% endmacro %}

{% macro duckdb__day_batches(relation, day_column, predicate) %}
    {#- Compiling before the relation is built (dbt compile, docs, linting): one batch. -#}
    {%- if not execute or load_relation(relation) is none %}{{ return([none]) }}{% endif %}
    {%- set day_rows -%}
        select cast({{ day_column }} as varchar) as day, count(*) as row_count
        from {{ relation }}
        {%- if predicate %}
        where ({{ predicate }})
        {%- endif %}
        group by {{ day_column }}
        order by {{ day_column }}
    {%- endset %}
    {%- set batches = [] %}
    {%- set current = {'first': none, 'last': none, 'rows': 0} %}
    {%- set days = run_query(day_rows).rows %}
    {#- A day that is null belongs to no range: then one batch of every day. -#}
    {%- if days | selectattr(0, 'none') | list %}{{ return([none]) }}{% endif %}
    {%- for row in days %}
        {%- if current.first is not none
            and current.rows + row[1] > var('percentile_batch_rows') %}
            {%- do batches.append([current.first, current.last]) %}
            {%- do current.update({'first': none, 'rows': 0}) %}
        {%- endif %}
        {%- if current.first is none %}{% do current.update({'first': row[0]}) %}{% endif %}
        {%- do current.update({'last': row[0], 'rows': current.rows + row[1]}) %}
    {%- endfor %}
    {%- if current.first is not none %}{% do batches.append([current.first, current.last]) %}{% endif %}
    {{ return(batches if batches | length > 1 else [none]) }}
{% endmacro %}

{#- The condition that keeps one batch of day_batches (true for none, the single batch). -#}
{% macro day_batch_condition(day_column, batch) %}
    {%- if batch is none -%}
        1 = 1
    {%- else -%}
        {{ day_column }} between cast('{{ batch[0] }}' as date) and cast('{{ batch[1] }}' as date)
    {%- endif -%}
{% endmacro %}

{#- The rows of every batch's CTE `<cte_prefix>_<n>` (n = 1 .. the number of batches), one after
    the other. -#}
{% macro day_batches_union(cte_prefix, batches) %}
    {%- for batch in batches %}
    select * from {{ cte_prefix }}_{{ loop.index }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{% endmacro %}
