{#- Whole milliseconds from one timestamp to a later one, as bigint. -#}
{% macro milliseconds_between(start_expression, end_expression) %}
    {{ return(adapter.dispatch('milliseconds_between', 'spend_warehouse')(start_expression, end_expression)) }}
{% endmacro %}

{% macro default__milliseconds_between(start_expression, end_expression) %}
    cast(round(extract(epoch from (({{ end_expression }}) - ({{ start_expression }}))) * 1000) as bigint)
{% endmacro %}

{% macro duckdb__milliseconds_between(start_expression, end_expression) %}
    (epoch_ms({{ end_expression }}) - epoch_ms({{ start_expression }}))
{% endmacro %}

{#- Spark: the difference in microseconds rounded to milliseconds (unix_millis truncates). -#}
{% macro spark__milliseconds_between(start_expression, end_expression) %}
    cast(round((unix_micros({{ end_expression }}) - unix_micros({{ start_expression }})) / 1000.0) as bigint)
{% endmacro %}
