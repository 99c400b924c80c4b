-- Projects (ProjectTable). Only a project with a row here and a budget row (budget_id) is a
-- budget holder; its requests are those of the keys carrying its project_id. The table is
-- optional (older proxies): it then reads as empty.
with

source as (

    {{ source_columns('proxy', 'projects', [
        ['project_id', 'varchar'],
        ['project_alias', 'varchar'],
        ['description', 'varchar'],
        ['team_id', 'varchar'],
        ['budget_id', 'varchar'],
        ['spend', 'double precision'],
        ['blocked', 'boolean'],
        ['created_at', 'timestamp'],
        ['created_by', 'varchar'],
        ['updated_at', 'timestamp'],
        ['updated_by', 'varchar'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        project_id,
        nullif(team_id, '') as team_id,
        nullif(budget_id, '') as budget_id,

        ----------  strings
        nullif(project_alias, '') as project_alias,
        nullif(description, '') as project_description,
        nullif(created_by, '') as created_by,
        nullif(updated_by, '') as updated_by,

        ----------  numerics
        {{ to_money('spend') }} as spend_counter_usd,

        ----------  booleans
        coalesce(blocked, false) as is_blocked,

        ----------  timestamps
        created_at,
        updated_at

    from source

)

select * from renamed
