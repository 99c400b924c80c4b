{#- The limits whose crossing is tracked, one row per row of `relation` and limit: its soft
    budget (when `soft_budget_usd` is a column of it), its max budget, and each var
    alert_threshold_pcts percentage of the max budget. Selects entity_budget_id, the
    `extra_columns` of the relation, crossing_type (soft_budget, max_budget or threshold),
    threshold_pct and threshold_usd. -#}
{% macro budget_limit_rows(relation, with_soft_budget=true, extra_columns=[]) %}
    {%- set extra -%}
        {%- for column in extra_columns %}
        {{ column }},
        {%- endfor %}
    {%- endset %}
    {% if with_soft_budget %}
    select
        entity_budget_id,{{ extra }}
        'soft_budget' as crossing_type,
        cast(null as numeric(9, 4)) as threshold_pct,
        soft_budget_usd as threshold_usd
    from {{ relation }}
    where soft_budget_usd is not null

    union all
    {% endif %}

    select
        entity_budget_id,{{ extra }}
        'max_budget' as crossing_type,
        cast(null as numeric(9, 4)) as threshold_pct,
        max_budget_usd as threshold_usd
    from {{ relation }}
    where max_budget_usd is not null

    {% for pct in var('alert_threshold_pcts') %}
    union all

    select
        entity_budget_id,{{ extra }}
        'threshold' as crossing_type,
        cast({{ pct }} as numeric(9, 4)) as threshold_pct,
        cast(
            max_budget_usd * cast({{ pct }} as numeric(9, 4)) * cast(0.01 as numeric(9, 4))
            as numeric(38, 10)
        ) as threshold_usd
    from {{ relation }}
    where max_budget_usd is not null
    {% endfor %}
{% endmacro %}
