-- Every version of the limits of every budget-bearing row, as the extraction recorded them
-- (dagster_project/lib/ingest/limit_history.py): valid from valid_from (null: since before the
-- first snapshot) until the next version of the same row; a deletion is a version of its own.
-- Empty until the first extraction that keeps it.
with

source as (

    {{ source_columns('proxy', 'budget_limit_history', [
        ['version_id', 'varchar'],
        ['source_table', 'varchar'],
        ['entity_id', 'varchar'],
        ['limits_json', 'varchar'],
        ['is_deleted', 'boolean'],
        ['valid_from', 'timestamp'],
        ['observed_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        version_id,
        source_table,
        entity_id,
        nullif({{ json_member_text('limits_json', 'budget_id') }}, '') as budget_id,

        ----------  strings
        {{ json_member_text('limits_json', 'budget_duration') }} as budget_duration,
        {{ json_member_text('limits_json', 'model_max_budget') }} as model_max_budget_json,
        {{ json_member_text('limits_json', 'budget_limits') }} as budget_limits_json,
        limits_json,

        ----------  numerics
        {{ to_money(json_member_text('limits_json', 'max_budget')) }} as max_budget_usd,
        {{ to_money(json_member_text('limits_json', 'soft_budget')) }} as soft_budget_usd,

        ----------  booleans
        coalesce(is_deleted, false) as is_deleted,

        ----------  timestamps
        valid_from,
        observed_at

    from source

)

select * from renamed
