{#- The distinct non-empty string elements of a JSON-array text column, one row each, numbered
    in sort order: selects `id_column`, `element` (text), `element_position` (1-based) and
    `element_count` from `relation`. Anything that is not a JSON array, and an array without
    such elements, yields no row. -#}
{% macro json_array_distinct_elements(relation, id_column, json_column) %}
    {{ return(adapter.dispatch('json_array_distinct_elements', 'spend_warehouse')(relation, id_column, json_column)) }}
{% endmacro %}

{% macro default__json_array_distinct_elements(relation, id_column, json_column) %}
    select
        {{ id_column }},
        element,
        row_number() over (partition by {{ id_column }} order by element) as element_position,
        count(*) over (partition by {{ id_column }}) as element_count
    from (
        select distinct
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
        where elements.element is not null and elements.element <> ''
    ) as distinct_elements
{% endmacro %}

{#- DuckDB: the few distinct JSON texts are parsed, de-duplicated and sorted once each, then
    joined back to the rows and numbered by list position (no group-by over all elements, no
    window). -#}
{% macro duckdb__json_array_distinct_elements(relation, id_column, json_column) %}
    select
        {{ relation }}.{{ id_column }},
        unnest(arrays.elements) as element,
        unnest(range(1, len(arrays.elements) + 1)) as element_position,
        len(arrays.elements) as element_count
    from {{ relation }}
    inner join (
        select
            json_text,
            list_sort(list_distinct(list_filter(
                from_json(json_text, '["VARCHAR"]'), lambda element: element <> ''
            ))) as elements
        from (select distinct {{ json_column }} as json_text from {{ relation }}) as json_texts
        where json_valid(json_text) and json_type(json_text) = 'ARRAY'
    ) as arrays
        on {{ relation }}.{{ json_column }} = arrays.json_text
    where len(arrays.elements) > 0
{% endmacro %}
