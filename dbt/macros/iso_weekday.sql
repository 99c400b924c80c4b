{#- ISO day of the week of a timestamp as integer: 1 (Monday) to 7 (Sunday). -#}
{% macro iso_weekday(expression) %}
    {{ return(adapter.dispatch('iso_weekday', 'spend_warehouse')(expression)) }}
{% endmacro %}

{% macro default__iso_weekday(expression) %}
    cast(extract(isodow from {{ expression }}) as integer)
{%- endmacro %}

{% macro spark__iso_weekday(expression) %}
    cast(extract(dayofweek_iso from {{ expression }}) as integer)
{%- endmacro %}
