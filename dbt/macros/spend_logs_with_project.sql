{#- The rows of `source_sql` (a select of the raw spend logs: stg_proxy__spend_logs's
    source_columns) with `columns` and project_id_at_request: the project the request's metadata
    names, flattened at extraction into meta_project_id ('' when absent). Rows landed before that
    column existed (null) parse their metadata. On DuckDB and Spark the two kinds are two
    branches, so that flattened rows never read the metadata, the widest column (10 M rows:
    0.02 s, against 1.2-2.4 s for one case expression, which reads every row's metadata, and
    3.8 s parsing every row); the branch of old rows skips row groups whose statistics hold no
    null. Each branch reads `source_sql` as its own subquery: DuckDB materializes a CTE read
    twice, every column of every row. PostgreSQL reads each row once: its case parses only the
    old rows' metadata. -#}
{% macro spend_logs_with_project(source_sql, columns) %}
    {{ return(adapter.dispatch('spend_logs_with_project', 'spend_warehouse')(
        source_sql, columns
    )) }}
{% endmacro %}

{% macro default__spend_logs_with_project(source_sql, columns) %}
select
    {{ columns | join(',\n    ') }},
    case
        when meta_project_id is not null then nullif(meta_project_id, '')
        else nullif({{ json_member_text('metadata', 'user_api_key_project_id') }}, '')
    end as project_id_at_request
from ({{ source_sql }}) as source
{% endmacro %}

{% macro duckdb__spend_logs_with_project(source_sql, columns) %}
select
    {{ columns | join(',\n    ') }},
    nullif(meta_project_id, '') as project_id_at_request
from ({{ source_sql }}) as source
where meta_project_id is not null

union all

select
    {{ columns | join(',\n    ') }},
    nullif({{ json_member_text('metadata', 'user_api_key_project_id') }}, '')
        as project_id_at_request
from ({{ source_sql }}) as source
where meta_project_id is null
{% endmacro %}

{% macro spark__spend_logs_with_project(source_sql, columns) %}
    {{ return(duckdb__spend_logs_with_project(source_sql, columns)) }}
{% endmacro %}
