{#- The incremental config of a fact that each run re-builds by whole days of `day_column`:
    delete+insert on that key; on Spark (parquet tables cannot delete rows), insert_overwrite of
    the table partitioned by it, which replaces exactly the days the run selects. -#}
{% macro incremental_by_day(day_column) %}
    {%- if target.type == 'spark' -%}
        {{ return({'incremental_strategy': 'insert_overwrite', 'partition_by': [day_column]}) }}
    {%- else -%}
        {{ return({'incremental_strategy': 'delete+insert', 'unique_key': day_column}) }}
    {%- endif -%}
{% endmacro %}
