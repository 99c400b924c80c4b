{#- Naive UTC timestamp -> naive wall-clock time in the budget time zone, and back.
    `at time zone` has the same meaning on DuckDB (ICU) and PostgreSQL; in UTC (the default) both
    are the identity and compile to the expression itself, sparing a per-row conversion. -#}
{% macro utc_to_local(expression) %}
    {%- if _budget_timezone_is_utc() -%}
    ({{ expression }})
    {%- else -%}
    (({{ expression }}) at time zone 'UTC') at time zone '{{ var("budget_timezone") }}'
    {%- endif -%}
{% endmacro %}

{% macro local_to_utc(expression) %}
    {%- if _budget_timezone_is_utc() -%}
    cast(({{ expression }}) as {{ dbt.type_timestamp() }})
    {%- else -%}
    cast((({{ expression }}) at time zone '{{ var("budget_timezone") }}') at time zone 'UTC' as {{ dbt.type_timestamp() }})
    {%- endif -%}
{% endmacro %}

{% macro _budget_timezone_is_utc() %}
    {{- return(var('budget_timezone') | upper in ['UTC', 'ETC/UTC', 'ZULU', 'ETC/ZULU']) -}}
{% endmacro %}

{#- The evaluation instant as a naive UTC timestamp: var budget_as_of, else the run's start
    (one value for every model of a build, unlike now()). -#}
{% macro as_of_utc() %}
    {%- set as_of = var('budget_as_of') or run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    cast('{{ as_of }}' as {{ dbt.type_timestamp() }})
{% endmacro %}
