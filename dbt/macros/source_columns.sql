{#- Select `columns` (list of [name, type]) from a raw source table, tolerating older proxies:
    a column the table lacks becomes a typed NULL, and a missing optional table becomes an empty
    relation with the same columns. At parse time nothing is introspected. -#}
{% macro source_columns(source_name, table_name, columns) %}
    {%- set relation = source(source_name, table_name) -%}
    {%- set present = [] -%}
    {%- set table_exists = true -%}
    {%- if execute -%}
        {%- set found = adapter.get_relation(
            database=relation.database, schema=relation.schema, identifier=relation.identifier
        ) -%}
        {%- if found is none -%}
            {%- set table_exists = false -%}
        {%- else -%}
            {%- for column in adapter.get_columns_in_relation(found) -%}
                {%- do present.append(column.name | lower) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif %}
    select
    {%- for name, data_type in columns %}
        {% if not execute or name in present -%}
            cast({{ adapter.quote(name) }} as {{ sql_type(data_type) }})
        {%- else -%}
            cast(null as {{ sql_type(data_type) }})
        {%- endif %} as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    {% if table_exists -%}
    from {{ relation }}
    {%- else -%}
    where 1 = 0
    {%- endif %}
{% endmacro %}
