{#- The share of part number `position` (1-based) when a whole-unit `amount` is split evenly over
    `parts`: floor(amount / parts), plus the remainder for part 1, so the shares sum to amount
    exactly. -#}
{% macro even_share(amount, parts, position) %}
    {{ integer_divide(amount, parts) }}
    + case
        when {{ position }} = 1
            then {{ amount }} - {{ integer_divide(amount, parts) }} * {{ parts }}
        else 0
    end
{%- endmacro %}
