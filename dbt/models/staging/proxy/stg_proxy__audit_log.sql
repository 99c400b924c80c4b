-- The proxy's audit log (AuditLog, written only with store_audit_logs on): one row per management
-- change. table_name carries the proxy's table prefix, so the table is named here without it.
-- The table is optional: it then reads as empty.
with

source as (

    {{ source_columns('proxy', 'audit_log', [
        ['id', 'varchar'],
        ['updated_at', 'timestamp'],
        ['changed_by', 'varchar'],
        ['changed_by_api_key', 'varchar'],
        ['action', 'varchar'],
        ['table_name', 'varchar'],
        ['object_id', 'varchar'],
        ['before_value', 'varchar'],
        ['updated_values', 'varchar'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        id as audit_log_id,
        object_id,

        ----------  strings
        action,
        table_name,
        case
            when table_name like '%DeletedVerificationToken' then 'DeletedVerificationToken'
            when table_name like '%DeprecatedVerificationToken' then 'DeprecatedVerificationToken'
            when table_name like '%VerificationToken' then 'VerificationToken'
            when table_name like '%DeletedTeamTable' then 'DeletedTeamTable'
            when table_name like '%TeamTable' then 'TeamTable'
            when table_name like '%UserTable' then 'UserTable'
            when table_name like '%OrganizationTable' then 'OrganizationTable'
            when table_name like '%BudgetTable' then 'BudgetTable'
            else table_name
        end as proxy_table,
        nullif(changed_by, '') as changed_by,
        nullif(changed_by_api_key, '') as changed_by_key_hash,
        before_value as before_value_json,
        updated_values as updated_values_json,

        ----------  timestamps
        updated_at as changed_at

    from source

)

select * from renamed
