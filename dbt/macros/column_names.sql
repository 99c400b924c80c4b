{#- The lowercase column names of an existing relation (a model's own table on an incremental
    build: columns added since it was first built are missing from it). -#}
{% macro column_names(relation) %}
    {{ return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) }}
{% endmacro %}
