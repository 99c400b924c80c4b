{#- Stable md5 hex of the given column expressions (NULL-safe, separator-safe), the same on
    every adapter. -#}
{% macro surrogate_key(expressions) %}
    {%- set parts = [] -%}
    {%- for expression in expressions -%}
        {%- do parts.append("coalesce(cast(" ~ expression ~ " as " ~ dbt.type_string() ~ "), '<null>')") -%}
    {%- endfor -%}
    md5({{ parts | join(" || '|' || ") }})
{% endmacro %}
