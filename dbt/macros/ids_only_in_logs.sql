{#- The distinct non-null values of column in logs that known does not have (anti-join): the
    ids only the spend logs name, which a dimension adds with is_known false. -#}
{% macro ids_only_in_logs(logs, known, column) %}
    select distinct {{ logs }}.{{ column }}
    from {{ logs }}
    left join {{ known }}
        on {{ logs }}.{{ column }} = {{ known }}.{{ column }}
    where {{ logs }}.{{ column }} is not null and {{ known }}.{{ column }} is null
{% endmacro %}
