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

unioned as (

    select
        budget_period_id,
        entity_budget_id,
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        cast(null as varchar) as budget_model,
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

final as (

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
        cast(soft_budget_usd as numeric(38, 10)) as soft_budget_usd,
        cast(max_budget_usd as numeric(38, 10)) as max_budget_usd,
        cast(period_spend_usd as numeric(38, 10)) as period_spend_usd,
        cast(request_count as bigint) as request_count,
        cast(soft_budget_pct_used as numeric(38, 4)) as soft_budget_pct_used,
        cast(max_budget_pct_used as numeric(38, 4)) as max_budget_pct_used,
        cast(projected_period_spend_usd as numeric(38, 10)) as projected_period_spend_usd,
        cast(projection_basis_days as numeric(12, 4)) as projection_basis_days,
        is_current_period,
        period_start,
        period_end,
        soft_budget_crossed_at,
        max_budget_crossed_at,
        first_request_at,
        last_request_at,
        evaluated_at
    from unioned

)

select * from final
