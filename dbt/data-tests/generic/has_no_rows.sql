{#- Fails when the model has any row (models that list problems, e.g. invalid durations). -#}
{% test has_no_rows(model) %}

    select *
    from {{ model }}

{% endtest %}
