{#- The adapter's spelling of a type name the models cast to (`varchar`, `double precision`, ...):
    Spark has no unsized varchar and no `double precision`. -#}
{% macro sql_type(name) %}
    {{ return(adapter.dispatch('sql_type', 'spend_warehouse')(name)) }}
{% endmacro %}

{% macro default__sql_type(name) %}
    {{ return(name) }}
{% endmacro %}

{% macro spark__sql_type(name) %}
    {{ return({'varchar': 'string', 'text': 'string', 'double precision': 'double'}.get(name, name)) }}
{% endmacro %}
