{#- `expression` plus `days` days (an integer SQL expression), via dbt's cross-database dateadd. -#}
{% macro add_days(expression, days) %}
    {{ dbt.dateadd('day', days, expression) }}
{% endmacro %}
