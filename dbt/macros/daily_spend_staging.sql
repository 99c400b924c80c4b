{#- The columns every daily aggregate table of the proxy shares (DailyUserSpend, DailyTeamSpend,
    DailyOrganizationSpend, DailyEndUserSpend, DailyTagSpend; migrations of litellm-proxy-extras),
    as [name, type] pairs for source_columns. Older proxies lack mcp_namespaced_tool_name,
    endpoint and the cache-token columns: they read as NULL. -#}
{% macro daily_spend_source_columns() %}
    {{ return([
        ['id', 'varchar'],
        ['date', 'varchar'],
        ['api_key', 'varchar'],
        ['model', 'varchar'],
        ['model_group', 'varchar'],
        ['custom_llm_provider', 'varchar'],
        ['mcp_namespaced_tool_name', 'varchar'],
        ['endpoint', 'varchar'],
        ['spend', 'double precision'],
        ['prompt_tokens', 'bigint'],
        ['completion_tokens', 'bigint'],
        ['cache_read_input_tokens', 'bigint'],
        ['cache_creation_input_tokens', 'bigint'],
        ['api_requests', 'bigint'],
        ['successful_requests', 'bigint'],
        ['failed_requests', 'bigint'],
        ['created_at', 'timestamp'],
        ['updated_at', 'timestamp'],
    ]) }}
{% endmacro %}

{#- The renamed columns of a daily aggregate table's staging model, after its entity id: the
    proxy's date text as a date, spend as exact money and integer units, counters defaulted to 0. -#}
{% macro daily_spend_staged_columns() %}
        nullif(api_key, '') as key_hash,

        ----------  strings
        nullif(model, '') as model,
        nullif(model_group, '') as model_group,
        nullif(custom_llm_provider, '') as provider,
        nullif(mcp_namespaced_tool_name, '') as mcp_namespaced_tool_name,
        nullif(endpoint, '') as endpoint,

        ----------  numerics
        {{ to_money('spend') }} as spend_usd,
        {{ to_money_units('spend') }} as spend_units,
        coalesce(api_requests, 0) as request_count,
        coalesce(successful_requests, 0) as successful_request_count,
        coalesce(failed_requests, 0) as failed_request_count,
        coalesce(prompt_tokens, 0) as prompt_tokens,
        coalesce(completion_tokens, 0) as completion_tokens,
        coalesce(cache_read_input_tokens, 0) as cache_read_input_tokens,
        coalesce(cache_creation_input_tokens, 0) as cache_creation_input_tokens,

        ----------  dates
        cast(date as date) as spend_date,

        ----------  timestamps
        created_at,
        updated_at
{%- endmacro %}
