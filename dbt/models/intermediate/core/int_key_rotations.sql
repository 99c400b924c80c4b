-- A table: the spend attribution and the key dimension read it.
{{ config(materialized='table') }}

-- Every key hash a rotation replaced, one row per old hash: the hash that replaced it, when, on
-- what evidence, and the key's current hash at the end of the chain (key_identity: a key rotated
-- twice goes old1 -> old2 -> live). Regenerating a key updates the live row in place to a new
-- hash and copies the old row to DeletedVerificationToken (budget-features.md, key rotation).
-- Evidence, strongest first: an AuditLog row of action rotated (object_id = the old hash, the
-- new hash in updated_values.token); a DeprecatedVerificationToken row (active_token_id = the new
-- hash; only during the grace period); else the deleted copy matched to the one live key with the
-- same created_at, alias, user and team (a rotation keeps them; a deleted key re-created later
-- does not share its created_at).
with recursive

keys as (

    select * from {{ ref('stg_proxy__verification_tokens') }}

),

deleted_keys as (

    select * from {{ ref('stg_proxy__deleted_verification_tokens') }}

),

deprecated_keys as (

    select * from {{ ref('stg_proxy__deprecated_verification_tokens') }}

),

audit_log as (

    select * from {{ ref('stg_proxy__audit_log') }}

),

audited as (

    select
        object_id as old_key_hash,
        {{ json_member_text('updated_values_json', 'token') }} as new_key_hash,
        changed_at as rotated_at,
        'audit_log' as evidence,
        1 as evidence_rank
    from audit_log
    where action = 'rotated' and proxy_table = 'VerificationToken'

),

deprecated as (

    select
        key_hash as old_key_hash,
        active_key_hash as new_key_hash,
        created_at as rotated_at,
        'deprecated_token' as evidence,
        2 as evidence_rank
    from deprecated_keys

),

-- A deleted copy whose hash is not live, matched to exactly one live key.
matched as (

    select
        deleted_keys.key_hash as old_key_hash,
        min(keys.key_hash) as new_key_hash,
        min(deleted_keys.deleted_at) as rotated_at,
        'deleted_row_match' as evidence,
        3 as evidence_rank
    from deleted_keys
    inner join keys
        on
            deleted_keys.created_at = keys.created_at
            and coalesce(deleted_keys.key_alias, '') = coalesce(keys.key_alias, '')
            and coalesce(deleted_keys.user_id, '') = coalesce(keys.user_id, '')
            and coalesce(deleted_keys.team_id, '') = coalesce(keys.team_id, '')
            and deleted_keys.key_hash <> keys.key_hash
    where deleted_keys.key_hash not in (select live.key_hash from keys as live)
    group by deleted_keys.key_hash
    having count(distinct keys.key_hash) = 1

),

edges as (

    select * from audited
    union all
    select * from deprecated
    union all
    select * from matched

),

ranked as (

    select
        *,
        row_number() over (
            partition by old_key_hash
            order by evidence_rank asc, rotated_at desc, new_key_hash asc
        ) as edge_rank
    from edges
    where
        old_key_hash is not null
        and new_key_hash is not null
        and old_key_hash <> new_key_hash

),

rotations as (

    select
        old_key_hash,
        new_key_hash,
        rotated_at,
        evidence
    from ranked
    where edge_rank = 1

),

-- Follow each old hash along the chain (at most 50 rotations: a cycle cannot loop forever).
chains (old_key_hash, reached_key_hash, chain_length) as (

    select
        old_key_hash,
        new_key_hash as reached_key_hash,
        1 as chain_length
    from rotations

    union all

    select
        chains.old_key_hash,
        rotations.new_key_hash as reached_key_hash,
        chains.chain_length + 1 as chain_length
    from chains
    inner join rotations
        on chains.reached_key_hash = rotations.old_key_hash
    where chains.chain_length < 50

),

ends as (

    select
        old_key_hash,
        reached_key_hash as key_identity,
        chain_length as rotations_to_identity,
        row_number() over (partition by old_key_hash order by chain_length desc) as end_rank
    from chains

),

final as (

    select
        rotations.old_key_hash as key_hash,
        rotations.new_key_hash as rotated_to_key_hash,
        ends.key_identity,
        ends.rotations_to_identity,
        rotations.evidence,
        rotations.rotated_at
    from rotations
    inner join ends
        on rotations.old_key_hash = ends.old_key_hash
    where ends.end_rank = 1

)

select * from final
