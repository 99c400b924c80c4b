{#- Fails for every value of `column_name` that is null or occurs more than once: unique and
    not_null in one scan of the model. -#}
{% test primary_key(model, column_name) %}

    select
        {{ column_name }} as primary_key_value,
        count(*) as occurrences
    from {{ model }}
    group by {{ column_name }}
    having count(*) > 1 or {{ column_name }} is null

{% endtest %}
