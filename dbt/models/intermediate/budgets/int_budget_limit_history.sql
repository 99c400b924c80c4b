-- Every known version of the limits of every budget-bearing row, from two sources of evidence:
-- - the warehouse's own history (stg_proxy__budget_limit_history): a version per change an
--   extraction saw, the first one valid since before the first snapshot;
-- - the proxy's audit log, where audit logging is on: an 'updated' row of a key, team, user or
--   budget row holds in before_value the row as it was until the change and in updated_values
--   what the change set. It gives the versions before the first snapshot and any change made and
--   changed again between two snapshots.
-- Each audited change gives two versions: the limits before it, from the row's change before
-- it (null: since ever), and the limits after it (before_value overlaid with updated_values),
-- from the change. The first snapshot's version starts at the last audited change before that
-- snapshot. Of versions starting at the same instant, a snapshot's wins over an audited
-- after-state, which wins over an audited before-state; consecutive versions with the same
-- limits are one; valid_to is the start of the next version.
with

snapshots as (

    select * from {{ ref('stg_proxy__budget_limit_history') }}

),

audit_log as (

    select * from {{ ref('stg_proxy__audit_log') }}

),

audit_changes as (

    select
        audit_log_id,
        case proxy_table
            when 'VerificationToken' then 'verification_tokens'
            when 'TeamTable' then 'teams'
            when 'UserTable' then 'users'
            when 'BudgetTable' then 'budgets'
        end as source_table,
        case
            when proxy_table = 'VerificationToken'
                then coalesce(
                    nullif({{ json_member_text('before_value_json', 'token') }}, ''), object_id
                )
            else object_id
        end as entity_id,
        before_value_json,
        coalesce(updated_values_json, '{}') as updated_values_json,
        changed_at
    from audit_log
    where
        action = 'updated'
        and proxy_table in ('VerificationToken', 'TeamTable', 'UserTable', 'BudgetTable')
        and before_value_json is not null
        and changed_at is not null

),

first_observed as (

    select
        source_table,
        entity_id,
        min(observed_at) as first_observed_at
    from snapshots
    group by source_table, entity_id

),

change_points as (

    select
        source_table,
        entity_id,
        changed_at
    from audit_changes

    union all

    select
        source_table,
        entity_id,
        valid_from as changed_at
    from snapshots
    where valid_from is not null

),

-- The row's limit columns before and after each audited change, as text.
{%- set limit_fields = [
    'budget_id', 'budget_duration', 'model_max_budget', 'budget_limits', 'soft_budget',
    'max_budget',
] %}
audit_states as (

    select
        audit_changes.audit_log_id,
        audit_changes.source_table,
        audit_changes.entity_id,
        {%- for field in limit_fields %}
        {{ json_member_text('audit_changes.before_value_json', field) }} as {{ field }}_text,
        {%- endfor %}
        (
            select max(change_points.changed_at) as changed_at
            from change_points
            where
                change_points.source_table = audit_changes.source_table
                and change_points.entity_id = audit_changes.entity_id
                and change_points.changed_at < audit_changes.changed_at
        ) as valid_from,
        audit_changes.changed_at as observed_at,
        2 as evidence_rank
    from audit_changes

    union all

    select
        audit_changes.audit_log_id,
        audit_changes.source_table,
        audit_changes.entity_id,
        {%- for field in limit_fields %}
        case
            when {{ json_has_member('audit_changes.updated_values_json', field) }}
                then {{ json_member_text('audit_changes.updated_values_json', field) }}
            else {{ json_member_text('audit_changes.before_value_json', field) }}
        end as {{ field }}_text,
        {%- endfor %}
        audit_changes.changed_at as valid_from,
        audit_changes.changed_at as observed_at,
        1 as evidence_rank
    from audit_changes

),

-- Typed, and limited to the columns the warehouse's own history keeps for each table.
audit_versions as (

    select
        {{ surrogate_key([
            "'audit_log'", 'audit_log_id', 'cast(evidence_rank as ' ~ sql_type('varchar') ~ ')',
        ]) }} as version_id,
        source_table,
        entity_id,
        case
            when source_table = 'verification_tokens' then nullif(budget_id_text, '')
        end as budget_id,
        budget_duration_text as budget_duration,
        nullif(model_max_budget_text, '{}') as model_max_budget_json,
        case
            when source_table in ('verification_tokens', 'teams', 'users')
                then nullif(budget_limits_text, '[]')
        end as budget_limits_json,
        case
            when source_table in ('teams', 'budgets')
                then {{ to_money("soft_budget_text") }}
        end as soft_budget_usd,
        {{ to_money("max_budget_text") }} as max_budget_usd,
        false as is_deleted,
        valid_from,
        observed_at,
        'audit_log' as evidence,
        evidence_rank
    from audit_states

),

snapshot_versions as (

    select
        snapshots.version_id,
        snapshots.source_table,
        snapshots.entity_id,
        snapshots.budget_id,
        snapshots.budget_duration,
        snapshots.model_max_budget_json,
        snapshots.budget_limits_json,
        snapshots.soft_budget_usd,
        snapshots.max_budget_usd,
        snapshots.is_deleted,
        coalesce(
            snapshots.valid_from,
            (
                select max(audit_changes.changed_at) as changed_at
                from audit_changes
                where
                    audit_changes.source_table = snapshots.source_table
                    and audit_changes.entity_id = snapshots.entity_id
                    and audit_changes.changed_at <= first_observed.first_observed_at
            )
        ) as valid_from,
        snapshots.observed_at,
        'snapshot' as evidence,
        0 as evidence_rank
    from snapshots
    inner join first_observed
        on
            snapshots.source_table = first_observed.source_table
            and snapshots.entity_id = first_observed.entity_id

),

unioned as (

    select * from snapshot_versions
    union all
    select * from audit_versions

),

signed as (

    select
        *,
        concat_ws(
            '|',
            coalesce(cast(max_budget_usd as {{ sql_type('varchar') }}), ''),
            coalesce(cast(soft_budget_usd as {{ sql_type('varchar') }}), ''),
            coalesce(budget_duration, ''),
            coalesce(budget_id, ''),
            coalesce(replace(model_max_budget_json, ' ', ''), ''),
            coalesce(replace(budget_limits_json, ' ', ''), ''),
            case when is_deleted then 'deleted' else '' end
        ) as limits_signature,
        row_number() over (
            partition by source_table, entity_id, valid_from
            order by evidence_rank asc, observed_at desc
        ) as start_rank
    from unioned

),

one_per_start as (

    select * from signed
    where start_rank = 1

),

changes as (

    select
        *,
        coalesce(
            limits_signature <> lag(limits_signature) over (
                partition by source_table, entity_id
                order by valid_from asc nulls first
            ),
            true
        ) as is_change
    from one_per_start

),

final as (

    select
        version_id,
        source_table,
        entity_id,
        budget_id,
        budget_duration,
        model_max_budget_json,
        budget_limits_json,
        soft_budget_usd,
        max_budget_usd,
        is_deleted,
        valid_from,
        lead(valid_from) over (
            partition by source_table, entity_id
            order by valid_from asc nulls first
        ) as valid_to,
        observed_at,
        evidence
    from changes
    where is_change

)

select * from final
