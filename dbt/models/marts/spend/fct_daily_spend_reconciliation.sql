-- Per entity kind (user, team, organization, end user, tag), entity and UTC date: the spend logs
-- rolled up under the proxy's rules (int_entity_days_logged) against the proxy's own daily
-- aggregate tables (int_proxy_daily_spend_unioned), with every difference classified. In order:
--   match               equal (spend within var daily_spend_tolerance_usd, counts and tokens exact)
--   tag_fan_out         a tag row equal to the full cost of its requests but not to their
--                       allocated split: the proxy adds each request's full cost to every tag
--   spend_log_retention the day is before (or is the partly deleted first day of) the earliest
--                       spend log kept, the daily tables reach further back, and they are not
--                       below the logs: the logs of the day were deleted, the daily rows kept
--   spend_logs_disabled the day overlaps a stretch without any spend log (int_spend_log_gaps_found,
--                       the open stretch after the last log bounded by the daily tables) and the
--                       daily tables are not below the logs
--   in_flight           the day ended less than var daily_reconciliation_settle_minutes before the
--                       daily tables' last update: flushes may still be on their way
--   counter_reset       the daily tables are below the logs and their first row for the entity and
--                       day was created more than var daily_row_created_lag_minutes after its first
--                       logged request: the rows were deleted and restarted from zero
--   lost_batch          the daily tables are below the logs (never above): increments the proxy
--                       lost (a dropped flush) or daily rows missing altogether
--   unexplained         anything else (e.g. the daily tables above the logs on a logged day)
-- Team and organization rows without an id are compared only when the proxy writes such rows
-- (versions that skip a request without a team or organization write none); log days before the
-- first day of their kind's daily table are left out (the table did not exist yet, or an older
-- proxy has none).
with

logged as (

    select * from {{ ref('int_entity_days_logged') }}

),

recorded as (

    select * from {{ ref('int_proxy_daily_spend_unioned') }}

),

log_gaps as (

    select * from {{ ref('int_spend_log_gaps_found') }}

),

-- Per kind: the first day its daily table holds, and whether it holds rows without an id.
kind_extent as (

    select
        entity_type,
        min(spend_date) as first_daily_date,
        max(case when entity_id is null then 1 else 0 end) = 1 as has_rows_without_id
    from recorded
    group by entity_type

),

-- Log days are compared from the first day their kind's daily table holds: a proxy without the
-- table (older versions), or before its migration, kept no such rows.
logged_compared as (

    select logged.*
    from logged
    inner join kind_extent
        on
            logged.entity_type = kind_extent.entity_type
            and logged.spend_date >= kind_extent.first_daily_date
    where
        logged.entity_id is not null
        or logged.entity_type in ('user', 'end_user')
        or kind_extent.has_rows_without_id

),

-- Every request has a user row: the users' days span what the logs still hold.
log_extent as (

    select
        min(spend_date) as first_log_date,
        max(last_request_at) as last_request_at
    from logged
    where entity_type = 'user'

),

daily_extent as (

    select
        min(spend_date) as first_daily_date,
        max(last_updated_at) as last_updated_at
    from recorded

),

-- The logging gaps, the open one bounded by the daily tables' last update and kept only when at
-- least var spend_log_gap_hours long; no spend log at all makes everything one gap.
gaps as (

    select
        log_gaps.gap_started_at,
        coalesce(log_gaps.gap_ended_at, daily_extent.last_updated_at) as gap_ended_at
    from log_gaps
    cross join daily_extent
    where
        log_gaps.gap_ended_at is not null
        or daily_extent.last_updated_at >= {{ dbt.dateadd(
            'hour', var('spend_log_gap_hours'), 'log_gaps.gap_started_at'
        ) }}

    union all

    select
        cast(null as timestamp) as gap_started_at,
        cast(null as timestamp) as gap_ended_at
    from log_extent
    where log_extent.first_log_date is null

),

joined as (

    select
        coalesce(logged_compared.entity_type, recorded.entity_type) as entity_type,
        coalesce(logged_compared.entity_id, recorded.entity_id) as entity_id,
        coalesce(logged_compared.request_count, 0) as log_request_count,
        coalesce(recorded.request_count, 0) as daily_request_count,
        coalesce(logged_compared.successful_request_count, 0) as log_successful_request_count,
        coalesce(recorded.successful_request_count, 0) as daily_successful_request_count,
        coalesce(logged_compared.failed_request_count, 0) as log_failed_request_count,
        coalesce(recorded.failed_request_count, 0) as daily_failed_request_count,
        coalesce(logged_compared.prompt_tokens, 0) as log_prompt_tokens,
        coalesce(recorded.prompt_tokens, 0) as daily_prompt_tokens,
        coalesce(logged_compared.completion_tokens, 0) as log_completion_tokens,
        coalesce(recorded.completion_tokens, 0) as daily_completion_tokens,
        {{ units_to_money('coalesce(logged_compared.spend_units, 0)') }} as log_spend_usd,
        {{ units_to_money('coalesce(recorded.spend_units, 0)') }} as daily_spend_usd,
        {{ units_to_money('logged_compared.allocated_spend_units') }} as log_allocated_spend_usd,
        coalesce(recorded.daily_row_count, 0) as daily_row_count,
        coalesce(logged_compared.spend_date, recorded.spend_date) as spend_date,
        logged_compared.first_request_at,
        recorded.first_created_at as daily_created_at,
        recorded.last_updated_at as daily_updated_at
    from logged_compared
    full outer join recorded
        on
            logged_compared.entity_type = recorded.entity_type
            and coalesce(logged_compared.entity_id, '') = coalesce(recorded.entity_id, '')
            and logged_compared.spend_date = recorded.spend_date

),

compared as (

    select
        joined.*,
        cast(joined.spend_date as timestamp) as day_started_at,
        {{ dbt.dateadd('day', 1, 'cast(joined.spend_date as timestamp)') }} as day_ended_at,
        joined.daily_spend_usd - joined.log_spend_usd as spend_difference_usd,
        abs(joined.daily_spend_usd - joined.log_spend_usd)
        <= cast({{ var('daily_spend_tolerance_usd') }} as numeric(38, 10)) as is_spend_equal,
        joined.daily_request_count = joined.log_request_count
        and joined.daily_successful_request_count = joined.log_successful_request_count
        and joined.daily_failed_request_count = joined.log_failed_request_count
        and joined.daily_prompt_tokens = joined.log_prompt_tokens
        and joined.daily_completion_tokens = joined.log_completion_tokens as is_count_equal,
        -- The daily tables nowhere below the logs (spend within the tolerance) ...
        joined.log_spend_usd - joined.daily_spend_usd
        <= cast({{ var('daily_spend_tolerance_usd') }} as numeric(38, 10))
        and joined.daily_request_count >= joined.log_request_count
        and joined.daily_successful_request_count >= joined.log_successful_request_count
        and joined.daily_failed_request_count >= joined.log_failed_request_count
        and joined.daily_prompt_tokens >= joined.log_prompt_tokens
        and joined.daily_completion_tokens >= joined.log_completion_tokens as is_daily_not_below,
        -- ... and nowhere above them.
        joined.daily_spend_usd - joined.log_spend_usd
        <= cast({{ var('daily_spend_tolerance_usd') }} as numeric(38, 10))
        and joined.daily_request_count <= joined.log_request_count
        and joined.daily_successful_request_count <= joined.log_successful_request_count
        and joined.daily_failed_request_count <= joined.log_failed_request_count
        and joined.daily_prompt_tokens <= joined.log_prompt_tokens
        and joined.daily_completion_tokens <= joined.log_completion_tokens as is_daily_not_above
    from joined

),

gap_days as (

    select distinct
        compared.entity_type,
        compared.entity_id,
        compared.spend_date
    from compared
    inner join gaps
        on
            (gaps.gap_started_at is null or compared.day_ended_at > gaps.gap_started_at)
            and (gaps.gap_ended_at is null or compared.day_started_at < gaps.gap_ended_at)

),

classified as (

    select
        compared.*,
        case
            when compared.is_spend_equal and compared.is_count_equal
                then case
                    when
                        compared.entity_type = 'tag'
                        and compared.log_allocated_spend_usd <> compared.log_spend_usd
                        then 'tag_fan_out'
                    else 'match'
                end
            when
                compared.is_daily_not_below
                and daily_extent.first_daily_date < log_extent.first_log_date
                and compared.spend_date <= log_extent.first_log_date
                then 'spend_log_retention'
            when compared.is_daily_not_below and gap_days.spend_date is not null
                then 'spend_logs_disabled'
            when
                {{ dbt.dateadd(
                    'minute',
                    var('daily_reconciliation_settle_minutes'),
                    'compared.day_ended_at',
                ) }} > daily_extent.last_updated_at
                then 'in_flight'
            when
                compared.is_daily_not_above
                and compared.daily_created_at > {{ dbt.dateadd(
                    'minute', var('daily_row_created_lag_minutes'), 'compared.first_request_at'
                ) }}
                then 'counter_reset'
            when compared.is_daily_not_above then 'lost_batch'
            else 'unexplained'
        end as reconciliation_class
    from compared
    cross join log_extent
    cross join daily_extent
    left join gap_days
        on
            compared.entity_type = gap_days.entity_type
            and coalesce(compared.entity_id, '') = coalesce(gap_days.entity_id, '')
            and compared.spend_date = gap_days.spend_date

),

final as (

    select
        {{ surrogate_key(['entity_type', 'entity_id', 'spend_date']) }}
            as daily_spend_reconciliation_id,
        entity_type,
        entity_id,
        reconciliation_class,
        cast(log_request_count as bigint) as log_request_count,
        cast(daily_request_count as bigint) as daily_request_count,
        cast(log_successful_request_count as bigint) as log_successful_request_count,
        cast(daily_successful_request_count as bigint) as daily_successful_request_count,
        cast(log_failed_request_count as bigint) as log_failed_request_count,
        cast(daily_failed_request_count as bigint) as daily_failed_request_count,
        cast(log_prompt_tokens as bigint) as log_prompt_tokens,
        cast(daily_prompt_tokens as bigint) as daily_prompt_tokens,
        cast(log_completion_tokens as bigint) as log_completion_tokens,
        cast(daily_completion_tokens as bigint) as daily_completion_tokens,
        cast(log_spend_usd as numeric(38, 10)) as log_spend_usd,
        cast(daily_spend_usd as numeric(38, 10)) as daily_spend_usd,
        cast(spend_difference_usd as numeric(38, 10)) as spend_difference_usd,
        cast(log_allocated_spend_usd as numeric(38, 10)) as log_allocated_spend_usd,
        cast(daily_row_count as bigint) as daily_row_count,
        reconciliation_class = 'unexplained' as is_unexplained,
        spend_date,
        first_request_at,
        daily_created_at,
        daily_updated_at
    from classified

)

select * from final
