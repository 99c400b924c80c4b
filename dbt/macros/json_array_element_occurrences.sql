{#- How often each non-empty element occurs in each distinct JSON-array text of a column: selects
    `json_text`, `element` (text) and `occurrence_count` from `relation`. Unlike
    json_array_distinct_elements, repeated elements count every time (the proxy's DailyTagSpend
    adds a request once per element of its request_tags). A text that is not a JSON array, and an
    array without such elements, yields no row. -#}
{% macro json_array_element_occurrences(relation, json_column) %}
    {{ return(adapter.dispatch('json_array_element_occurrences', 'spend_warehouse')(relation, json_column)) }}
{% endmacro %}

{% macro default__json_array_element_occurrences(relation, json_column) %}
    select
        json_texts.json_text,
        elements.element,
        count(*) as occurrence_count
    from (
        select distinct {{ json_column }} as json_text
        from {{ relation }}
        where {{ json_column }} is not null
    ) as json_texts
    cross join lateral jsonb_array_elements_text(
        case
            when jsonb_typeof(cast(json_texts.json_text as jsonb)) = 'array'
                then cast(json_texts.json_text as jsonb)
            else cast('[]' as jsonb)
        end
    ) as elements (element)
    where elements.element is not null and elements.element <> ''
    group by
        json_texts.json_text,
        elements.element
{% endmacro %}

{#- DuckDB: each distinct text is parsed once; texts that are not arrays get a null list, which
    unnest turns into no rows (no WHERE below the DISTINCT, see json_array_distinct_elements). -#}
{% macro duckdb__json_array_element_occurrences(relation, json_column) %}
    select
        json_text,
        element,
        count(*) as occurrence_count
    from (
        select
            json_text,
            unnest(elements) as element
        from (
            select
                json_text,
                case
                    when json_valid(json_text) and json_type(json_text) = 'ARRAY'
                        then list_filter(
                            from_json(json_text, '["VARCHAR"]'), lambda element: element <> ''
                        )
                end as elements
            from (select distinct {{ json_column }} as json_text from {{ relation }}) as json_texts
        ) as arrays
    ) as occurrences
    group by
        json_text,
        element
{% endmacro %}
