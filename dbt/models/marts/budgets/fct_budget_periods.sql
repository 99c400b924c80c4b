-- One row per entity, budget and period: every period with spend, plus each calendar budget's
-- current period (also when it has no spend yet), with the projection of the current bounded
-- period. Calendar budgets (max/soft budgets with budget_duration) come from
-- int_budget_periods_projected, per-model budgets (model_max_budget, rolling windows) from
-- int_model_budget_periods; this model unions them and fixes the published types.
with

projected_periods as (

    select * from {{ ref('int_budget_periods_projected') }}

),

model_budget_periods as (

    select * from {{ ref('int_model_budget_periods') }}

),

limit_versions as (

    select * from {{ ref('int_budget_limit_versions') }}

),

unioned as (

    select
        budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_model,
        budget_window,
        budget_id,
        budget_duration,
        period_kind,
        soft_budget_usd,
        max_budget_usd,
        period_spend_usd,
        request_count,
        soft_budget_pct_used,
        max_budget_pct_used,
        projected_period_spend_usd,
        projection_basis_days,
        is_current_period,
        period_start,
        period_end,
        soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at,
        evaluated_at
    from projected_periods

    union all

    select
        budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_model,
        budget_window,
        budget_id,
        budget_duration,
        period_kind,
        soft_budget_usd,
        max_budget_usd,
        period_spend_usd,
        request_count,
        soft_budget_pct_used,
        max_budget_pct_used,
        projected_period_spend_usd,
        projection_basis_days,
        is_current_period,
        period_start,
        period_end,
        soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at,
        evaluated_at
    from model_budget_periods

),

-- The last change of the budget's limits inside the period, if any.
changed as (

    select
        unioned.budget_period_id,
        max(limit_versions.valid_from) as limit_changed_at
    from unioned
    inner join limit_versions
        on
            unioned.entity_budget_id = limit_versions.entity_budget_id
            and unioned.period_start < limit_versions.valid_from
            and (unioned.period_end is null or unioned.period_end > limit_versions.valid_from)
    group by unioned.budget_period_id

),

final as (

    select
        unioned.budget_period_id,
        unioned.entity_budget_id,
        unioned.entity_type,
        unioned.entity_id,
        unioned.entity_alias,
        unioned.budget_source,
        unioned.budget_model,
        unioned.budget_window,
        unioned.budget_id,
        unioned.budget_duration,
        unioned.period_kind,
        cast(unioned.soft_budget_usd as numeric(38, 10)) as soft_budget_usd,
        cast(unioned.max_budget_usd as numeric(38, 10)) as max_budget_usd,
        cast(unioned.period_spend_usd as numeric(38, 10)) as period_spend_usd,
        cast(unioned.request_count as bigint) as request_count,
        cast(unioned.soft_budget_pct_used as numeric(38, 4)) as soft_budget_pct_used,
        cast(unioned.max_budget_pct_used as numeric(38, 4)) as max_budget_pct_used,
        cast(unioned.projected_period_spend_usd as numeric(38, 10)) as projected_period_spend_usd,
        cast(unioned.projection_basis_days as numeric(12, 4)) as projection_basis_days,
        unioned.is_current_period,
        unioned.period_start,
        unioned.period_end,
        unioned.soft_budget_crossed_at,
        unioned.max_budget_crossed_at,
        unioned.first_request_at,
        unioned.last_request_at,
        unioned.evaluated_at,
        changed.limit_changed_at
    from unioned
    left join changed
        on unioned.budget_period_id = changed.budget_period_id

)

select * from final
