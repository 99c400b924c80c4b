{#- Float8 USD amount -> exact numeric(38,10), identical on every adapter.

    PostgreSQL converts float8 to numeric through its 15-significant-digit text form (DBL_DIG)
    before rounding to the scale; DuckDB's direct cast rounds the binary value and differs in the
    last digit for about 2 % of values. The DuckDB variant reproduces PostgreSQL's two steps. -#}
{% macro to_money(expression) %}
    {{ return(adapter.dispatch('to_money', 'spend_warehouse')(expression)) }}
{% endmacro %}

{% macro default__to_money(expression) %}
    cast({{ expression }} as numeric(38, 10))
{% endmacro %}

{% macro duckdb__to_money(expression) %}
    cast(cast(printf('%.15g', {{ expression }}) as decimal(38, 18)) as decimal(38, 10))
{% endmacro %}
