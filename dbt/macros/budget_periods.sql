{#- Budget period arithmetic on naive wall-clock timestamps in the budget time zone.

    `kind` is the alignment kind from int_budget_durations_parsed:
      day     1d / daily: local midnight
      week    7d / 1w / weekly: Monday 00:00
      month   30d / 1mo / monthly: the 1st of the month 00:00
      days    other Nd / Nw: N-day periods counted from the anchor day (upstream: the day the
              budget was created or last set)
      seconds Nh / Nm / Ns: periods of `step_seconds` counted from each local midnight (the last
              one of a day ends at the next midnight)
    `open` (no duration) has no boundaries; callers handle it. -#}
{% macro budget_period_start_local(ts, kind, step_days, step_seconds, anchor) %}
    case {{ kind }}
        when 'day' then {{ dbt.date_trunc('day', ts) }}
        when 'week' then {{ dbt.date_trunc('week', ts) }}
        when 'month' then {{ dbt.date_trunc('month', ts) }}
        when 'days' then {{ dbt.dateadd(
            'day',
            'cast(floor(' ~ dbt.datediff(dbt.date_trunc('day', anchor), dbt.date_trunc('day', ts), 'day')
                ~ ' / cast(' ~ step_days ~ ' as numeric)) as integer) * ' ~ step_days,
            dbt.date_trunc('day', anchor),
        ) }}
        when 'seconds' then {{ dbt.dateadd(
            'second',
            'cast(floor(' ~ seconds_since_midnight(ts) ~ ' / cast(' ~ step_seconds
                ~ ' as numeric)) as integer) * ' ~ step_seconds,
            dbt.date_trunc('day', ts),
        ) }}
    end
{% endmacro %}

{% macro budget_period_end_local(period_start, kind, step_days, step_seconds) %}
    case {{ kind }}
        when 'day' then {{ dbt.dateadd('day', 1, period_start) }}
        when 'week' then {{ dbt.dateadd('day', 7, period_start) }}
        when 'month' then {{ dbt.dateadd('month', 1, period_start) }}
        when 'days' then {{ dbt.dateadd('day', step_days, period_start) }}
        when 'seconds' then least(
            {{ dbt.dateadd('second', step_seconds, period_start) }},
            {{ dbt.dateadd('day', 1, dbt.date_trunc('day', period_start)) }}
        )
    end
{% endmacro %}

{% macro seconds_since_midnight(ts) %}
    (
        cast(extract(hour from {{ ts }}) as integer) * 3600
        + cast(extract(minute from {{ ts }}) as integer) * 60
        + cast(floor(extract(second from {{ ts }})) as integer)
    )
{% endmacro %}

{#- The end of a rolling window opened at `start`: `months` calendar months when not null, else
    `seconds` seconds; null (never ends) when both are null. -#}
{% macro rolling_window_end(start, months, seconds) %}
    case
        when {{ months }} is not null then {{ dbt.dateadd('month', months, start) }}
        when {{ seconds }} is not null then {{ dbt.dateadd('second', seconds, start) }}
    end
{% endmacro %}
