-- A table: int_model_budget_windows and int_model_budget_crossings read it.
{{ config(materialized='table') }}

-- Each request once per per-model budget it counts against (int_model_budgets_aligned: the
-- entries that can be enforced): the requests of the budget's key, user or end user whose model
-- matches the budget's model the way the proxy matches it: the request's model_group, else its
-- model; first as written, then without its provider prefix (openai/gpt-4o matches gpt-4o). A
-- request counts against at most one model entry of an entity: an exact match wins over a
-- match without the prefix.
with

spend_logs as (

    select * from {{ ref('int_spend_logs_attributed') }}

),

valid_budgets as (

    select * from {{ ref('int_model_budgets_aligned') }}

),

-- The requests of entities holding a per-model budget, once per such entity.
entity_requests as (

    {% for entity_type, column in [
        ('key', 'key_identity'), ('user', 'user_id'), ('end_user', 'end_user_id'),
    ] %}
    select
        '{{ entity_type }}' as entity_type,
        {{ column }} as entity_id,
        request_id,
        coalesce(nullif(model_group, ''), model) as requested_model,
        spend_usd,
        spend_units,
        started_at
    from spend_logs
    where
        {{ column }} in (
            select valid_budgets.entity_id
            from valid_budgets
            where valid_budgets.entity_type = '{{ entity_type }}'
        )
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

match_names as (

    select
        entity_requests.*,
        entity_requests.requested_model as match_name,
        1 as match_priority
    from entity_requests

    union all

    select
        entity_requests.*,
        substr(
            entity_requests.requested_model, position('/' in entity_requests.requested_model) + 1
        ) as match_name,
        2 as match_priority
    from entity_requests
    where position('/' in entity_requests.requested_model) > 0

),

matched as (

    select
        valid_budgets.entity_budget_id,
        match_names.request_id,
        match_names.spend_usd,
        match_names.spend_units,
        match_names.started_at,
        row_number() over (
            partition by match_names.entity_type, match_names.entity_id, match_names.request_id
            order by match_names.match_priority, valid_budgets.budget_source
        ) as match_rank
    from match_names
    inner join valid_budgets
        on
            match_names.entity_type = valid_budgets.entity_type
            and match_names.entity_id = valid_budgets.entity_id
            and match_names.match_name = valid_budgets.budget_model

),

final as (

    select
        entity_budget_id,
        request_id,
        spend_usd,
        spend_units,
        started_at
    from matched
    where match_rank = 1

)

select * from final
