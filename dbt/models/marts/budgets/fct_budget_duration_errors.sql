-- Every budget and spend counter whose budget_duration the grammar rejects, and every per-model
-- budget entry (model_max_budget) and multi-window budget entry (budget_limits) that cannot be
-- enforced, with the reason. Such a budget is
-- never read as "no limit": it has no periods in fct_budget_periods, its counter is not
-- reconciled, and the data test on this model fails (severity from var
-- invalid_budget_duration_severity) until it is fixed in the proxy.
with

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

spend_counters as (

    select * from {{ ref('int_spend_counters') }}

),

model_budgets as (

    select * from {{ ref('int_model_budgets_resolved') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

affected as (

    select
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_model,
        budget_window,
        budget_id,
        budget_duration,
        config_error
    from budgets

    union

    select
        entity_type,
        entity_id,
        entity_alias,
        'spend_counter' as budget_source,
        cast(null as {{ sql_type('varchar') }}) as budget_model,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        cast(null as {{ sql_type('varchar') }}) as budget_id,
        counter_duration as budget_duration,
        cast(null as {{ sql_type('varchar') }}) as config_error
    from spend_counters

    union

    select
        entity_type,
        entity_id,
        entity_alias,
        budget_source,
        budget_model,
        cast(null as {{ sql_type('varchar') }}) as budget_window,
        budget_id,
        budget_duration,
        config_error
    from model_budgets

),

final as (

    select
        {{ surrogate_key([
            'affected.entity_type', 'affected.entity_id',
            "affected.budget_source || coalesce('/' || affected.budget_model, '')"
            ~ " || coalesce(':' || affected.budget_window, '')",
        ]) }} as budget_duration_error_id,
        affected.entity_type,
        affected.entity_id,
        affected.entity_alias,
        affected.budget_source,
        affected.budget_model,
        affected.budget_window,
        affected.budget_id,
        affected.budget_duration,
        coalesce(affected.config_error, durations.parse_error) as parse_error
    from affected
    inner join durations
        on coalesce(affected.budget_duration, '<none>') = durations.duration_key
    where affected.config_error is not null or not durations.is_valid

)

select * from final
