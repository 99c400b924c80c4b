-- Every per-model budget that can be enforced (int_model_budgets_resolved without a config
-- error, with a duration int_budget_durations_parsed accepts), with the length of its rolling
-- windows: window_months for 1mo, else window_seconds (Ns, Nm, Nh, Nd, Nw; daily, weekly,
-- monthly as 1, 7 and 30 days); both null for a budget without a duration (one window that never
-- ends).
with

model_budgets as (

    select * from {{ ref('int_model_budgets_resolved') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

final as (

    select
        model_budgets.entity_budget_id,
        model_budgets.entity_type,
        model_budgets.entity_id,
        model_budgets.budget_source,
        model_budgets.budget_model,
        case when durations.duration_unit = 'mo' then durations.duration_count end
            as window_months,
        durations.duration_seconds as window_seconds
    from model_budgets
    inner join durations
        on coalesce(model_budgets.budget_duration, '<none>') = durations.duration_key
    where model_budgets.config_error is null and durations.is_valid

)

select * from final
