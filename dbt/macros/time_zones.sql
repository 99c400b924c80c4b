{#- Naive UTC timestamp -> naive wall-clock time in the budget time zone, and back.
    `at time zone` has the same meaning on DuckDB (ICU) and PostgreSQL, Spark converts with
    to_utc_timestamp / from_utc_timestamp (convert_time_zone); in UTC (the default) both are the
    identity and compile to the expression itself, sparing a per-row conversion. -#}
{% macro utc_to_local(expression) %}
    {%- if _budget_timezone_is_utc() -%}
    ({{ expression }})
    {%- else -%}
    {{ convert_time_zone(expression, 'UTC', var('budget_timezone')) }}
    {%- endif -%}
{% endmacro %}

{% macro local_to_utc(expression) %}
    {%- if _budget_timezone_is_utc() -%}
    cast(({{ expression }}) as {{ dbt.type_timestamp() }})
    {%- else -%}
    cast({{ convert_time_zone(expression, var('budget_timezone'), 'UTC') }} as {{ dbt.type_timestamp() }})
    {%- endif -%}
{% endmacro %}

{#- Naive wall-clock time in time zone `from_zone` -> the same instant's in `to_zone`. -#}
{% macro convert_time_zone(expression, from_zone, to_zone) %}
    {{- return(adapter.dispatch('convert_time_zone', 'spend_warehouse')(expression, from_zone, to_zone)) -}}
{% endmacro %}

{% macro default__convert_time_zone(expression, from_zone, to_zone) -%}
    (({{ expression }}) at time zone '{{ from_zone }}') at time zone '{{ to_zone }}'
{%- endmacro %}

{% macro spark__convert_time_zone(expression, from_zone, to_zone) -%}
    from_utc_timestamp(to_utc_timestamp({{ expression }}, '{{ from_zone }}'), '{{ to_zone }}')
{%- endmacro %}

{% macro _budget_timezone_is_utc() %}
    {{- return(var('budget_timezone') | upper in ['UTC', 'ETC/UTC', 'ZULU', 'ETC/ZULU']) -}}
{% endmacro %}

{#- The evaluation instant as a naive UTC timestamp: var budget_as_of, else the run's start
    (one value for every model of a build, unlike now()). -#}
{% macro as_of_utc() %}
    {%- set as_of = var('budget_as_of') or run_started_at.strftime('%Y-%m-%d %H:%M:%S') -%}
    cast('{{ as_of }}' as {{ dbt.type_timestamp() }})
{% endmacro %}
