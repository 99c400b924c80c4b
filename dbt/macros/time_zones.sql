{#- Naive UTC timestamp -> naive wall-clock time in the budget time zone, and back.
    `at time zone` has the same meaning on DuckDB (ICU) and PostgreSQL. -#}
{% macro utc_to_local(expression) %}
    (({{ expression }}) at time zone 'UTC') at time zone '{{ var("budget_timezone") }}'
{% endmacro %}

{% macro local_to_utc(expression) %}
    cast((({{ expression }}) at time zone '{{ var("budget_timezone") }}') at time zone 'UTC' as {{ dbt.type_timestamp() }})
{% endmacro %}

{#- The evaluation instant as a naive UTC timestamp: var budget_as_of, else the run's start
    (one value for every model of a build, unlike now()). -#}
{% macro as_of_utc() %}
    {%- set as_of = var('budget_as_of') or run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    cast('{{ as_of }}' as {{ dbt.type_timestamp() }})
{% endmacro %}
