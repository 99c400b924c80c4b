-- A table: four budget models read it.
{{ config(materialized='table') }}

-- Every budget whose duration parses (and, for budget_limits windows, whose entry is valid),
-- with its period alignment (int_budget_durations_parsed: period_kind, step_days,
-- step_seconds; is_sub_hour when Nm / Ns steps put period boundaries inside local hours) and,
-- as wall-clock time in var budget_timezone, the anchor of N-day periods (1970-01-01 when
-- unknown) and the owner's creation time. Budgets whose duration
-- cannot be parsed are left out here and listed in fct_budget_duration_errors.
with

budgets as (

    select * from {{ ref('int_budgets_resolved') }}

),

durations as (

    select * from {{ ref('int_budget_durations_parsed') }}

),

aligned as (

    select
        budgets.entity_budget_id,
        budgets.entity_type,
        budgets.entity_id,
        budgets.entity_alias,
        budgets.budget_source,
        budgets.budget_window,
        budgets.budget_id,
        budgets.budget_duration,
        budgets.soft_budget_usd,
        budgets.max_budget_usd,
        durations.period_kind,
        durations.step_days,
        durations.step_seconds,
        coalesce(
            durations.period_kind = 'seconds' and durations.step_seconds % 3600 <> 0, false
        ) as is_sub_hour,
        {{ utc_to_local("coalesce(budgets.anchor_at, cast('1970-01-01' as timestamp))") }}
            as anchor_local,
        {{ utc_to_local('budgets.anchor_at') }} as created_local
    from budgets
    inner join durations
        on coalesce(budgets.budget_duration, '<none>') = durations.duration_key
    where durations.is_valid and budgets.config_error is null

)

select * from aligned
