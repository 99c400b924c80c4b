{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        **incremental_by_day('error_date'),
    )
}}
-- Failed LLM call attempts (ErrorLogs) per UTC day, model group, provider, exception type and
-- status code, with the error rate against the requests the spend logs record for the same day,
-- model group and provider. ErrorLogs has one row per attempt (retries and fallbacks each count),
-- so the rate can exceed 1; spend-log failure rows are counted separately (failed_request_count)
-- and never added to error_count, as the two overlap and cannot be joined. Incremental like
-- fct_spend_daily: recent days, plus any day with error or spend rows extracted since the last
-- build.
with

{% if is_incremental() %}
built as (

    select
        {{ add_days('max(error_date)', '-' ~ var('incremental_rebuild_days')) }} as rebuild_from,
        max(last_extracted_at) as watermark
    from {{ this }}

),

-- Days before rebuild_from with error or spend rows extracted since the last build (late rows).
late_days as (

    select cast(started_at as date) as late_date
    from {{ ref('stg_proxy__error_logs') }}
    where extracted_at > (select built.watermark from built)

    union

    select cast(started_at as date) as late_date
    from {{ ref('stg_proxy__spend_logs') }}
    where extracted_at > (select built.watermark from built)

),
{% endif %}

error_logs as (

    select * from {{ ref('stg_proxy__error_logs') }}
    {% if is_incremental() %}
    where
        cast(started_at as date) >= (select built.rebuild_from from built)
        or cast(started_at as date) in (select late_days.late_date from late_days)
    {% endif %}

),

-- The spend logs as staged: the error rate needs no attribution through keys.
logged_requests as (

    select
        cast(started_at as date) as spend_date,
        model_group,
        provider,
        is_failure,
        extracted_at
    from {{ ref('stg_proxy__spend_logs') }}

),

spend_logs as (

    select * from logged_requests
    {% if is_incremental() %}
    where
        spend_date >= (select built.rebuild_from from built)
        or spend_date in (select late_days.late_date from late_days)
    {% endif %}

),

errors as (

    select
        cast(started_at as date) as error_date,
        model_group,
        provider,
        exception_type,
        status_code,
        count(*) as error_count,
        min(started_at) as first_error_at,
        max(started_at) as last_error_at,
        max(extracted_at) as last_extracted_at
    from error_logs
    group by
        cast(started_at as date),
        model_group,
        provider,
        exception_type,
        status_code

),

requests as (

    select
        spend_date,
        model_group,
        provider,
        count(*) as request_count,
        sum(case when is_failure then 1 else 0 end) as failed_request_count,
        max(extracted_at) as last_extracted_at
    from spend_logs
    group by
        spend_date,
        model_group,
        provider

),

final as (

    select
        cast(
            {{ surrogate_key([
                'errors.error_date', 'errors.model_group', 'errors.provider', 'errors.exception_type',
                'errors.status_code',
            ]) }}
            as {{ sql_type('varchar') }}
        ) as error_daily_id,
        cast(errors.model_group as {{ sql_type('varchar') }}) as model_group,
        cast(errors.provider as {{ sql_type('varchar') }}) as provider,
        cast(errors.exception_type as {{ sql_type('varchar') }}) as exception_type,
        cast(errors.status_code as {{ sql_type('varchar') }}) as status_code,
        cast(errors.error_count as bigint) as error_count,
        cast(coalesce(requests.request_count, 0) as bigint) as request_count,
        cast(coalesce(requests.failed_request_count, 0) as bigint) as failed_request_count,
        {{ safe_divide('errors.error_count', 'requests.request_count') }} as error_rate,
        errors.error_date,
        errors.first_error_at,
        errors.last_error_at,
        case
            when
                requests.last_extracted_at is null
                or errors.last_extracted_at > requests.last_extracted_at
                then errors.last_extracted_at
            else requests.last_extracted_at
        end as last_extracted_at
    from errors
    left join requests
        on
            errors.error_date = requests.spend_date
            and errors.model_group is not distinct from requests.model_group
            and errors.provider is not distinct from requests.provider

)

select * from final
