{#- Float8 USD amount -> exact numeric(38,10), the same on every adapter and cheap.

    The double is scaled to integer units and rounded half up with IEEE arithmetic that every
    engine performs identically (one multiplication, one addition, floor), then turned into a
    decimal: units of 1e-10 USD below $100,000 (the scaled value stays below 2^53, so every
    amount with at most 10 decimals converts to itself), units of 1e-4 USD up to $1e9, whole
    dollars beyond. No text round trip: on DuckDB this is ~60x faster than formatting the value
    the way PostgreSQL's float8 -> numeric cast does, and agrees with that cast except where its
    15-significant-digit rounding and the 10-decimal rounding meet (a last-digit difference). -#}
{% macro to_money(expression) %}
    {%- set value = 'cast(' ~ expression ~ ' as ' ~ sql_type('double precision') ~ ')' -%}
    cast(
        case
            when abs({{ value }}) < 100000
                then {{ _scaled_units(value, 10) }}
            when abs({{ value }}) < 1000000000
                then {{ _scaled_units(value, 4) }}
            else {{ _scaled_units(value, 0) }}
        end
        as numeric(38, 10)
    )
{%- endmacro %}

{% macro _scaled_units(value, decimals) %}
    cast(cast({{ _half_up_scaled(value, decimals) }} as bigint) as numeric(38, 0))
    * cast({{ '1' if decimals == 0 else '0.' ~ '0' * (decimals - 1) ~ '1' }} as numeric(38, 10))
{%- endmacro %}

{#- value x 10^decimals rounded half up, as a (whole) double: the one rounding step of
    to_money and to_money_units. -#}
{% macro _half_up_scaled(value, decimals) %}
    floor({{ value }} * cast({{ 10 ** decimals }} as {{ sql_type('double precision') }}) + cast(0.5 as {{ sql_type('double precision') }}))
{%- endmacro %}

{#- A request's float8 USD spend as bigint units of 1e-10 USD: to_money's value without the
    decimal, for exact integer sums over many rows (convert the sum with units_to_money). Valid
    below $900M per row (beyond, the cast fails loudly instead of wrapping). -#}
{% macro to_money_units(expression) %}
    {%- set value = 'cast(' ~ expression ~ ' as ' ~ sql_type('double precision') ~ ')' -%}
    cast(
        case
            when abs({{ value }}) < 100000 then {{ _half_up_scaled(value, 10) }}
            else {{ _half_up_scaled(value, 4) }} * cast(1000000 as {{ sql_type('double precision') }})
        end
        as bigint
    )
{%- endmacro %}

{#- An integer number of 1e-10 USD units (e.g. a sum of to_money_units) as numeric(38,10). -#}
{% macro units_to_money(units) %}
    cast(cast({{ units }} as numeric(38, 0)) * cast(0.0000000001 as numeric(38, 10)) as numeric(38, 10))
{%- endmacro %}

{#- Whether a text is a non-negative amount of USD that casts exactly to numeric(38, 10): up to
    15 integer digits and 10 decimals (limits given as JSON text in model_max_budget and
    budget_limits). -#}
{% macro is_usd_amount_text(text) %}
    {{ regex_full_match(text, '[0-9]{1,15}([.][0-9]{1,10})?') }}
{%- endmacro %}
