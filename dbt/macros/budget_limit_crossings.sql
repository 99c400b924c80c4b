{#- What int_budget_limit_crossings takes from outside each budget, as one md5 (a scalar
    subquery): the inputs of the entity buckets its hours come from (entity_spend_buckets_inputs:
    attribution, key rotations, budgeted projects and tags, sub-hour budgets, the time zone) and
    var alert_threshold_pcts. A change to any of them can move any crossing. -#}
{% macro budget_limit_crossings_inputs() %}
(
    select md5(
        coalesce(max(inputs_fingerprint), '<none>')
        || '|{{ var('alert_threshold_pcts') | join(',') }}'
    ) as crossings_inputs
    from {{ ref('int_entity_spend_buckets') }}
)
{%- endmacro %}

{#- One row per budget with a valid duration (int_budgets_aligned): entity_budget_id and an md5
    of what its crossings depend on besides its requests: its periods' alignment, its limit
    versions (int_budget_limit_versions) and the start of its first period (a late request
    before it opens an earlier period, or moves the start of a budget without duration). -#}
{% macro budget_crossing_fingerprints() %}
select
    budgets.entity_budget_id,
    {{ surrogate_key([
        'budgets.entity_budget_id', 'budgets.entity_type', 'budgets.entity_id',
        'budgets.period_kind', 'budgets.step_days', 'budgets.step_seconds', 'budgets.is_sub_hour',
        'budgets.anchor_local', 'budgets.created_local', 'versions.limit_versions',
        'first_periods.first_period_start',
    ]) }} as budget_fingerprint
from {{ ref('int_budgets_aligned') }} as budgets
left join (
    select
        entity_budget_id,
        {{ sorted_string_agg(surrogate_key([
            'soft_budget_usd', 'max_budget_usd', 'valid_from', 'valid_to',
        ])) }} as limit_versions
    from {{ ref('int_budget_limit_versions') }}
    group by entity_budget_id
) as versions
    on budgets.entity_budget_id = versions.entity_budget_id
left join (
    select
        entity_budget_id,
        min(period_start) as first_period_start
    from {{ ref('int_budget_spend_hourly') }}
    group by entity_budget_id
) as first_periods
    on budgets.entity_budget_id = first_periods.entity_budget_id
{%- endmacro %}

{#- Pre-hook of int_budget_limit_crossings: delete the crossings of every budget whose
    fingerprint (budget_crossing_fingerprints) changed or that has no valid duration any more,
    and every crossing when the shared inputs (budget_limit_crossings_inputs) changed; the
    build then re-builds every period of those budgets. A table built before these columns
    existed is emptied. dbt runs the hook in the model's transaction; a table left emptied by
    a build that died anyway is re-built in full by the next one. -#}
{% macro budget_limit_crossings_reset() %}
    {%- if is_incremental() %}
        {%- set built = column_names(this) %}
        delete from {{ this }}
        {%- if 'budget_fingerprint' in built %}
        where
            inputs_fingerprint <> {{ budget_limit_crossings_inputs() }}
            or budget_fingerprint not in (
                select current_budgets.budget_fingerprint
                from ({{ budget_crossing_fingerprints() }}) as current_budgets
            )
        {%- endif %}
    {%- endif %}
{%- endmacro %}
