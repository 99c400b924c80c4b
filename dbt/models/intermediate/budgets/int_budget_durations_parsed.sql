-- Every distinct budget_duration in use, parsed with upstream's grammar (proxy-db.md §4.2), but
-- strictly: the whole value must be `<1-6 digits><unit>` with unit mo|s|m|h|d|w (m = minutes,
-- mo = months, only 1mo), or hourly / daily / weekly / monthly. NULL, '', 'none' and 'null' mean
-- no reset (one open-ended period). Anything else is invalid and listed with the reason; it is
-- never read as "no limit".
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

    select budget_duration from budgets
    union
    select counter_duration as budget_duration from spend_counters
    union
    select budget_duration from model_budgets

),

normalized as (

    select
        budget_duration,
        trim(coalesce(budget_duration, '')) as trimmed_duration
    from durations

),

matched as (

    select
        budget_duration,
        trimmed_duration,
        trimmed_duration in ('', 'none', 'null', 'None') as is_open_ended,
        {{ regex_full_match('trimmed_duration', '[0-9]{1,6}(mo|[smhdw])') }} as is_grammar_match
    from normalized

),

split as (

    select
        budget_duration,
        trimmed_duration,
        is_open_ended,
        is_grammar_match,
        case
            when trimmed_duration = 'hourly' then 'h'
            when trimmed_duration = 'daily' then 'd'
            when trimmed_duration in ('weekly', 'monthly') then 'd'
            when is_grammar_match and trimmed_duration like '%mo' then 'mo'
            when is_grammar_match then substr(trimmed_duration, length(trimmed_duration), 1)
        end as duration_unit,
        case
            when trimmed_duration in ('hourly', 'daily') then 1
            when trimmed_duration = 'weekly' then 7
            when trimmed_duration = 'monthly' then 30
            when is_grammar_match and trimmed_duration like '%mo'
                then cast(substr(trimmed_duration, 1, length(trimmed_duration) - 2) as integer)
            when is_grammar_match
                then cast(substr(trimmed_duration, 1, length(trimmed_duration) - 1) as integer)
        end as duration_count
    from matched

),

classified as (

    select
        budget_duration,
        duration_unit,
        duration_count,
        is_open_ended,
        case
            when is_open_ended then 'open'
            when duration_unit is null then null
            when duration_count = 0 then null
            when duration_unit = 'mo' and duration_count = 1 then 'month'
            when duration_unit = 'mo' then null
            when duration_unit = 'd' and duration_count = 1 then 'day'
            when duration_unit = 'd' and duration_count = 7 then 'week'
            when duration_unit = 'd' and duration_count = 30 then 'month'
            when duration_unit = 'd' then 'days'
            when duration_unit = 'w' and duration_count = 1 then 'week'
            when duration_unit = 'w' then 'days'
            else 'seconds'
        end as period_kind,
        case
            when duration_unit = 'd' then duration_count
            when duration_unit = 'w' then duration_count * 7
        end as step_days,
        case
            when duration_unit = 'h' then duration_count * 3600
            when duration_unit = 'm' then duration_count * 60
            when duration_unit = 's' then duration_count
        end as step_seconds,
        case
            when is_open_ended then null
            when duration_unit is null
                then 'not <number><unit> (unit s, m, h, d, w, mo) nor hourly/daily/weekly/monthly'
            when duration_count = 0 then 'a zero-length duration has no periods'
            when duration_unit = 'mo' and duration_count <> 1
                then 'only 1mo is a valid month duration (upstream rejects Nmo for N > 1)'
        end as parse_error
    from split

),

final as (

    select
        coalesce(budget_duration, '<none>') as duration_key,
        budget_duration,
        duration_unit,
        duration_count,
        period_kind,
        step_days,
        step_seconds,
        case duration_unit
            when 's' then duration_count
            when 'm' then duration_count * 60
            when 'h' then duration_count * 3600
            when 'd' then duration_count * 86400
            when 'w' then duration_count * 604800
        end as duration_seconds,
        parse_error,
        parse_error is null as is_valid,
        is_open_ended
    from classified

)

select * from final
