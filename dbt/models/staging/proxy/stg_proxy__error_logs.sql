with

source as (

    {{ source_columns('proxy', 'error_logs', [
        ['request_id', 'varchar'],
        ['model_group', 'varchar'],
        ['litellm_model_name', 'varchar'],
        ['model_id', 'varchar'],
        ['api_base', 'varchar'],
        ['exception_type', 'varchar'],
        ['exception_string', 'varchar'],
        ['status_code', 'varchar'],
        ['start_time', 'timestamp'],
        ['end_time', 'timestamp'],
        ['_extracted_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        request_id as error_id,
        nullif(model_id, '') as model_id,

        ----------  strings
        nullif(model_group, '') as model_group,
        nullif(litellm_model_name, '') as litellm_model_name,
        case
            when litellm_model_name like '%/%' then split_part(litellm_model_name, '/', 1)
        end as provider,
        nullif(api_base, '') as api_base,
        coalesce(nullif(exception_type, ''), 'unknown') as exception_type,
        exception_string,
        coalesce(nullif(status_code, ''), 'unknown') as status_code,

        ----------  timestamps
        start_time as started_at,
        end_time as ended_at,
        _extracted_at as extracted_at

    from source

)

select * from renamed
