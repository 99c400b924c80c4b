-- Stretches without any spend log between two logged hours, at least var spend_log_gap_hours
-- whole hours long: where the proxy wrote no spend logs at all (disable_spend_logs, or the
-- external SPEND_LOGS_URL writer) while its daily tables kept counting. The stretch after the
-- last logged hour is open-ended: fct_daily_spend_reconciliation bounds it by the daily tables.
with

spend_logs as (

    select * from {{ ref('stg_proxy__spend_logs') }}

),

logged_hours as (

    select distinct {{ dbt.date_trunc('hour', 'started_at') }} as hour_at
    from spend_logs

),

ordered_hours as (

    select
        hour_at,
        lead(hour_at) over (order by hour_at) as next_hour_at
    from logged_hours

),

final as (

    select
        {{ dbt.dateadd('hour', 1, 'hour_at') }} as gap_started_at,
        next_hour_at as gap_ended_at
    from ordered_hours
    where
        next_hour_at is null
        or next_hour_at >= {{ dbt.dateadd('hour', var('spend_log_gap_hours') + 1, 'hour_at') }}

)

select * from final
