-- Every budget and spend counter whose budget_duration the grammar rejects, with the reason.
-- Such a budget is never read as "no limit": it has no periods in fct_budget_periods, its
-- counter is not reconciled, and the data test on this model fails (severity from var
-- invalid_budget_duration_severity) until the duration is fixed in the proxy.
with

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

spend_counters as (

    select * from {{ ref('int_spend_counters') }}

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
        budget_id,
        budget_duration
    from budgets

    union

    select
        entity_type,
        entity_id,
        entity_alias,
        'spend_counter' as budget_source,
        cast(null as varchar) as budget_id,
        counter_duration as budget_duration
    from spend_counters

),

final as (

    select
        {{ surrogate_key([
            'affected.entity_type', 'affected.entity_id', 'affected.budget_source',
        ]) }} as budget_duration_error_id,
        affected.entity_type,
        affected.entity_id,
        affected.entity_alias,
        affected.budget_source,
        affected.budget_id,
        affected.budget_duration,
        durations.parse_error
    from affected
    inner join durations
        on coalesce(affected.budget_duration, '<none>') = durations.duration_key
    where not durations.is_valid

)

select * from final
