{#- PostgreSQL compiles a query to machine code (JIT) when its estimated cost passes
    jit_above_cost. The planner estimates the stacked intermediate views at billions of rows, so
    it compiled nearly every model and data test: on a 1,500-request build, 2,208 functions and
    28 s for int_budget_limit_crossings, whose query then ran in 0.1 s. Models and data tests
    run with JIT off in their own transaction; other adapters are untouched. -#}

{#- Pre-hook of every model (dbt_project.yml). -#}
{% macro postgres_without_jit() %}
    {%- if target.type == 'postgres' -%}
        set local jit = off
    {%- endif -%}
{% endmacro %}

{#- Data tests on PostgreSQL (dispatched from dbt's get_test_sql): the same query, in a
    transaction with JIT off. -#}
{% macro postgres__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
    {{ postgres_without_jit() }};
    {{ dbt.default__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) }}
{%- endmacro %}
