{#- numerator / denominator as numeric(38, scale), NULL when the denominator is 0 or NULL.
    DuckDB divides decimals in double precision, so its result is rounded through the same
    15-significant-digit form PostgreSQL's numeric result agrees with. -#}
{% macro safe_divide(numerator, denominator, scale=6) %}
    {{ return(adapter.dispatch('safe_divide', 'spend_warehouse')(numerator, denominator, scale)) }}
{% endmacro %}

{% macro default__safe_divide(numerator, denominator, scale=6) %}
    cast(cast({{ numerator }} as numeric) / nullif({{ denominator }}, 0) as numeric(38, {{ scale }}))
{% endmacro %}

{% macro duckdb__safe_divide(numerator, denominator, scale=6) %}
    cast(
        cast(printf('%.15g', cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)) as decimal(38, 18))
        as decimal(38, {{ scale }})
    )
{% endmacro %}

{#- Spark: as on DuckDB (Spark's decimal division would round to its own result scale). -#}
{% macro spark__safe_divide(numerator, denominator, scale=6) %}
    cast(
        cast(format_string('%.15g', cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)) as decimal(38, 18))
        as decimal(38, {{ scale }})
    )
{% endmacro %}
