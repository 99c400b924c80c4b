{#- Spark variants of dbt's own cross-database macros (the root project's `spark__` macros win
    dbt's dispatch). -#}

{#- dbt.cast, which also types the contract columns of the marts: the YAML's data types are
    spelled for DuckDB and PostgreSQL (varchar), translated by sql_type. -#}
{% macro spark__cast(field, type) %}
    cast({{ field }} as {{ sql_type(type) }})
{% endmacro %}

{#- dbt.dateadd: dbt-spark's goes through whole unix seconds and drops the fraction of a second;
    timestampadd keeps every microsecond (and, like DuckDB and PostgreSQL, returns a timestamp
    for a date). -#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) %}
    timestampadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
{% endmacro %}
