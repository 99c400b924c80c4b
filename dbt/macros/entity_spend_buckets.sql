{#- What int_entity_spend_buckets takes from outside the requests, as one md5 (a scalar
    subquery): the attribution changes of keys and teams so far (owner, organization, project,
    the identity a rotation gives an old hash; int_spend_attribution_versions, which only
    grows), the projects and tags with a budget row, the entities with a sub-hour budget,
    and var budget_timezone. A change to any of them can move spend of any day between entities
    or buckets; a key or team seen for the first time changes none of them. -#}
{% macro entity_spend_buckets_inputs() %}
(
    select md5({{ sorted_string_agg('bucket_inputs.input') }})
    from (
        select {{ surrogate_key([
            "'attribution_change'", 'attribution_version_id', 'seen_with_logs_until',
        ]) }} as input
        from {{ ref('int_spend_attribution_versions') }}
        where is_change

        union all

        select {{ surrogate_key(["'holder'", 'entity_type', 'entity_id']) }} as input
        from {{ ref('int_budget_holders_unioned') }}
        where entity_type in ('project', 'tag')

        union all

        select {{ surrogate_key(["'sub_hour'", 'entity_type', 'entity_id']) }} as input
        from {{ ref('int_budgets_aligned') }}
        where is_sub_hour

        union all

        select {{ surrogate_key(["'time_zone'", "'" ~ var('budget_timezone') ~ "'"]) }} as input
    ) as bucket_inputs
)
{%- endmacro %}

{#- Pre-hook of int_entity_spend_buckets: when its inputs (entity_spend_buckets_inputs) differ
    from those of its last build, delete every bucket, so the build re-builds all days from all
    requests. dbt runs the hook in the model's transaction; a table left empty by a build that
    died anyway is re-built in full by the next one (its rebuilt_days: every day). -#}
{% macro entity_spend_buckets_reset() %}
    {%- if is_incremental() %}
        delete from {{ this }}
        where inputs_fingerprint <> {{ entity_spend_buckets_inputs() }}
    {%- endif %}
{%- endmacro %}

{#- The values of an expression over a group as one text, sorted and joined with '|'. -#}
{% macro sorted_string_agg(expression) %}
    {{ return(adapter.dispatch('sorted_string_agg', 'spend_warehouse')(expression)) }}
{% endmacro %}

{% macro default__sorted_string_agg(expression) %}
    string_agg({{ expression }}, '|' order by {{ expression }})
{%- endmacro %}

{% macro spark__sorted_string_agg(expression) %}
    array_join(array_sort(collect_list({{ expression }})), '|')
{%- endmacro %}
