{#- The distinct non-empty string elements of each distinct JSON-array text of a column, one row
    each, numbered in sort order: selects `json_text`, `element` (text), `element_position`
    (1-based), `element_count` (distinct elements of the text) and `occurrence_count` (how often
    the element occurs in it: the proxy's DailyTagSpend adds a request once per occurrence) from
    `relation`. A text that is not a JSON array, and an array without such elements, yields no
    row. Callers join back on the text: the elements depend on nothing else, and a column like
    request_tags has few distinct texts. -#}
{% macro json_array_distinct_elements(relation, json_column) %}
    {{ return(adapter.dispatch('json_array_distinct_elements', 'spend_warehouse')(relation, json_column)) }}
{% endmacro %}

{% macro default__json_array_distinct_elements(relation, json_column) %}
    {%- set elements -%}
        select
            json_texts.json_text,
            elements.element
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
    {%- endset -%}
    {{ _numbered_distinct_elements(elements) }}
{% endmacro %}

{#- The non-empty distinct elements of `elements` (a query of json_text, element), counted and
    numbered per text in sort order. -#}
{% macro _numbered_distinct_elements(elements) %}
    select
        json_text,
        element,
        row_number() over (partition by json_text order by element) as element_position,
        count(*) over (partition by json_text) as element_count,
        occurrence_count
    from (
        select
            json_text,
            element,
            count(*) as occurrence_count
        from ({{ elements }}) as elements
        where element is not null and element <> ''
        group by
            json_text,
            element
    ) as distinct_elements
{% endmacro %}

{#- DuckDB: each distinct text is parsed, de-duplicated and sorted once, then numbered by list
    position (no group-by over all elements, no window). Texts that are not arrays get a null
    list, which unnest turns into no rows: a WHERE clause here would be pushed below the DISTINCT
    and validate the JSON of every row instead of every distinct text. -#}
{% macro duckdb__json_array_distinct_elements(relation, json_column) %}
    select
        json_text,
        element,
        element_position,
        element_count,
        len(list_filter(all_elements, lambda other: other = element)) as occurrence_count
    from (
        select
            json_text,
            all_elements,
            unnest(elements) as element,
            unnest(range(1, len(elements) + 1)) as element_position,
            len(elements) as element_count
        from (
            select
                json_text,
                all_elements,
                list_sort(list_distinct(all_elements)) as elements
            from (
                select
                    json_text,
                    case
                        when json_valid(json_text) and json_type(json_text) = 'ARRAY'
                            then list_filter(
                                from_json(json_text, '["VARCHAR"]'), lambda element: element <> ''
                            )
                    end as all_elements
                from (select distinct {{ json_column }} as json_text from {{ relation }}) as json_texts
            ) as parsed
        ) as arrays
    ) as numbered
{% endmacro %}

{#- Spark: each distinct text parsed once as an array of strings (from_json: null for a text that
    is not an array, which explode turns into no rows). -#}
{% macro spark__json_array_distinct_elements(relation, json_column) %}
    {%- set elements -%}
        select
            json_text,
            explode(from_json(json_text, 'array<string>')) as element
        from (select distinct {{ json_column }} as json_text from {{ relation }}) as json_texts
    {%- endset -%}
    {{ _numbered_distinct_elements(elements) }}
{% endmacro %}
