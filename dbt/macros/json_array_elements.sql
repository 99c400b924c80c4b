{#- One row per element of a JSON-array text column: selects `id_column` and `element`
    (text) from `relation`. Anything that is not a JSON array yields no row. -#}
{% macro json_array_elements(relation, id_column, json_column) %}
    {{ return(adapter.dispatch('json_array_elements', 'spend_warehouse')(relation, id_column, json_column)) }}
{% endmacro %}

{% macro default__json_array_elements(relation, id_column, json_column) %}
    select
        {{ relation }}.{{ id_column }},
        elements.element
    from {{ relation }}
    cross join lateral jsonb_array_elements_text(
        case
            when jsonb_typeof(cast({{ relation }}.{{ json_column }} as jsonb)) = 'array'
                then cast({{ relation }}.{{ json_column }} as jsonb)
            else cast('[]' as jsonb)
        end
    ) as elements (element)
{% endmacro %}

{% macro duckdb__json_array_elements(relation, id_column, json_column) %}
    select
        {{ id_column }},
        unnest(from_json({{ json_column }}, '["VARCHAR"]')) as element
    from {{ relation }}
    where json_valid({{ json_column }}) and json_type({{ json_column }}) = 'ARRAY'
{% endmacro %}
