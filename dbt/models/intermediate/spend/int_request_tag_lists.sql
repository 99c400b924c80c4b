-- A table of the few distinct tag lists: int_request_tags_allocated joins every request to it.
{{ config(materialized='table') }}

-- One row per distinct request_tags text and distinct non-empty tag in it, numbered in
-- alphabetical order with the list's tag count and how often the tag occurs in it. Texts that
-- are not JSON arrays, and arrays without such tags, have no rows (their requests count as
-- untagged).
with

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

tag_lists as (

    {{ json_array_distinct_elements('spend_logs', 'request_tags_json') }}

),

final as (

    select
        json_text as request_tags_json,
        element as tag,
        cast(element_position as integer) as tag_position,
        cast(element_count as integer) as tag_count,
        cast(occurrence_count as integer) as tag_occurrences
    from tag_lists

)

select * from final
