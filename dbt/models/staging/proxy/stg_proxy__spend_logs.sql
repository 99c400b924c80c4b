{%- set columns = [
    ['request_id', 'varchar'],
    ['call_type', 'varchar'],
    ['api_key', 'varchar'],
    ['user_id', 'varchar'],
    ['team_id', 'varchar'],
    ['organization_id', 'varchar'],
    ['meta_organization_id', 'varchar'],
    ['end_user', 'varchar'],
    ['model', 'varchar'],
    ['model_id', 'varchar'],
    ['model_group', 'varchar'],
    ['custom_llm_provider', 'varchar'],
    ['api_base', 'varchar'],
    ['session_id', 'varchar'],
    ['request_tags', 'varchar'],
    ['status', 'varchar'],
    ['cache_hit', 'varchar'],
    ['meta_key_alias', 'varchar'],
    ['meta_team_alias', 'varchar'],
    ['meta_error_class', 'varchar'],
    ['meta_error_code', 'varchar'],
    ['meta_project_id', 'varchar'],
    ['metadata', 'varchar'],
    ['spend', 'double precision'],
    ['prompt_tokens', 'bigint'],
    ['completion_tokens', 'bigint'],
    ['total_tokens', 'bigint'],
    ['request_duration_ms', 'bigint'],
    ['start_time', 'timestamp'],
    ['end_time', 'timestamp'],
    ['completion_start_time', 'timestamp'],
    ['_extracted_at', 'timestamp'],
] %}
{%- set project_sources = ['meta_project_id', 'metadata'] %}

with

-- The raw rows with the project the request's metadata names (flattened at extraction; rows
-- landed before that column existed parse their metadata).
source as (

    {{ spend_logs_with_project(
        source_columns('proxy', 'spend_logs', columns),
        columns | map(attribute=0) | reject('in', project_sources) | list,
    ) | indent(4) }}

),

renamed as (

    select
        ----------  ids
        request_id,
        nullif(api_key, '') as key_hash,
        nullif(user_id, '') as user_id,
        nullif(team_id, '') as team_id,
        coalesce(nullif(organization_id, ''), nullif(meta_organization_id, '')) as organization_id,
        nullif(end_user, '') as end_user_id,
        nullif(model_id, '') as model_id,
        nullif(session_id, '') as session_id,

        ----------  strings
        call_type,
        nullif(model, '') as model,
        nullif(model_group, '') as model_group,
        nullif(custom_llm_provider, '') as provider,
        nullif(api_base, '') as api_base,
        coalesce(nullif(status, ''), 'unknown') as request_status,
        nullif(meta_key_alias, '') as key_alias_at_request,
        nullif(meta_team_alias, '') as team_alias_at_request,
        nullif(meta_error_class, '') as error_class,
        nullif(meta_error_code, '') as error_code,
        project_id_at_request,
        request_tags as request_tags_json,

        ----------  numerics
        {{ to_money('spend') }} as spend_usd,
        {{ to_money_units('spend') }} as spend_units,
        coalesce(prompt_tokens, 0) as prompt_tokens,
        coalesce(completion_tokens, 0) as completion_tokens,
        coalesce(total_tokens, 0) as total_tokens,
        request_duration_ms,

        ----------  booleans
        case cache_hit
            when 'True' then true
            when 'False' then false
        end as is_cache_hit,
        coalesce(status = 'failure', false) as is_failure,

        ----------  timestamps
        start_time as started_at,
        end_time as ended_at,
        completion_start_time as completion_started_at,
        _extracted_at as extracted_at

    from source

)

select * from renamed
