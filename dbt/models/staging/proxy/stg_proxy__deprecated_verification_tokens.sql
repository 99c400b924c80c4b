-- The old hash of a rotated key during its grace period (DeprecatedVerificationToken): requests
-- may still carry it until revoke_at, after which the proxy deletes the row. The table is optional
-- (older proxies): it then reads as empty.
with

source as (

    {{ source_columns('proxy', 'deprecated_verification_tokens', [
        ['id', 'varchar'],
        ['token', 'varchar'],
        ['active_token_id', 'varchar'],
        ['revoke_at', 'timestamp'],
        ['created_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ----------  ids
        id as deprecated_key_id,
        token as key_hash,
        nullif(active_token_id, '') as active_key_hash,

        ----------  timestamps
        revoke_at,
        created_at

    from source

)

select * from renamed
