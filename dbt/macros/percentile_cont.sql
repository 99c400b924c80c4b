{#- Continuous percentile `fraction` of `expression` over the group, where `fractions` lists
    every fraction of that expression the query takes. DuckDB computes all of them in one
    aggregate (one sort per group instead of one per fraction; the identical aggregates of a
    select are computed once), with the same interpolation as percentile_cont. -#}
{% macro percentile_cont(expression, fraction, fractions) %}
    {{ return(adapter.dispatch('percentile_cont', 'spend_warehouse')(expression, fraction, fractions)) }}
{% endmacro %}

{% macro default__percentile_cont(expression, fraction, fractions) %}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__percentile_cont(expression, fraction, fractions) %}
    quantile_cont({{ expression }}, [{{ fractions | join(', ') }}])[{{ fractions.index(fraction) + 1 }}]
{%- endmacro %}
