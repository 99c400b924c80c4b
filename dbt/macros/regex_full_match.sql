{#- True when the whole string matches the (POSIX-compatible) regular expression. -#}
{% macro regex_full_match(expression, pattern) %}
    {{ return(adapter.dispatch('regex_full_match', 'spend_warehouse')(expression, pattern)) }}
{% endmacro %}

{% macro default__regex_full_match(expression, pattern) %}
    (({{ expression }}) ~ '^({{ pattern }})$')
{% endmacro %}

{% macro duckdb__regex_full_match(expression, pattern) %}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{% endmacro %}

{#- Spark: Java regular expressions; the patterns here have no backslashes, which Spark's string
    literals would consume. -#}
{% macro spark__regex_full_match(expression, pattern) %}
    regexp_like({{ expression }}, '^({{ pattern }})$')
{% endmacro %}
