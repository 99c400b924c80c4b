{#- Spark: (re)create each raw table of `tables` in the sources' schema as a parquet table over
    `location`/<table> (the Parquet export of dagster_project.lib.dbt.spark_raw). For
    `dbt run-operation create_spark_raw_tables --args '{location: ..., tables: [...]}'`. -#}
{% macro create_spark_raw_tables(location, tables) %}
    {%- set schema = var('raw_schema', env_var('DBT_RAW_SCHEMA', 'raw')) -%}
    {%- do run_query('create schema if not exists ' ~ schema) -%}
    {%- for table in tables -%}
        {%- do run_query('drop table if exists ' ~ schema ~ '.' ~ table) -%}
        {%- do run_query(
            'create table ' ~ schema ~ '.' ~ table ~ " using parquet location '" ~ location ~ '/' ~ table ~ "'"
        ) -%}
    {%- endfor -%}
{% endmacro %}
