{#- Whether `drift` (a money expression) is beyond the tolerated drift of a counter against
    `log_spend`: max(var counter_drift_tolerance_usd, var counter_drift_tolerance_pct % of the
    log spend). -#}
{% macro is_beyond_drift_tolerance(drift, log_spend) %}
    abs({{ drift }}) > case
        when
            {{ log_spend }}
            * cast({{ var('counter_drift_tolerance_pct') }} as numeric(9, 4))
            * cast(0.01 as numeric(9, 4))
            > cast({{ var('counter_drift_tolerance_usd') }} as numeric(38, 10))
            then
                {{ log_spend }}
                * cast({{ var('counter_drift_tolerance_pct') }} as numeric(9, 4))
                * cast(0.01 as numeric(9, 4))
        else cast({{ var('counter_drift_tolerance_usd') }} as numeric(38, 10))
    end
{% endmacro %}
