{#- Integer division truncating toward zero, as bigint, on every adapter. -#}
{% macro integer_divide(dividend, divisor) %}
    {{ return(adapter.dispatch('integer_divide', 'spend_warehouse')(dividend, divisor)) }}
{% endmacro %}

{% macro default__integer_divide(dividend, divisor) %}
    cast(({{ dividend }}) / ({{ divisor }}) as bigint)
{% endmacro %}

{% macro duckdb__integer_divide(dividend, divisor) %}
    cast(({{ dividend }}) // ({{ divisor }}) as bigint)
{% endmacro %}

{% macro spark__integer_divide(dividend, divisor) %}
    cast(({{ dividend }}) div ({{ divisor }}) as bigint)
{% endmacro %}
