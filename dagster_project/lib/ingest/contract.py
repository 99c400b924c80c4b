"""The raw layer's contract: table and column names and types after landing.

Extraction normalizes the proxy's tables to these snake_case names and Arrow types, whatever the
source's prefix or version (missing newer columns become NULL; unknown extra columns are recorded
as drift and not landed). dbt sources (``dbt/models/staging/proxy/_proxy__sources.yml``) read
exactly these tables in the warehouse schema ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

RAW_SCHEMA = "raw"

TS = pa.timestamp("us")  # naive UTC, millisecond values
STR = pa.string()


@dataclass(frozen=True)
class RawColumn:
    """One landed column: its raw name, the source expression, and its Arrow type."""

    name: str
    source: str | None  # source column name (unquoted); None = derived or load metadata
    type: pa.DataType
    description: str


def _c(name: str, source: str | None, typ: pa.DataType, description: str) -> RawColumn:
    return RawColumn(name, source, typ, description)


SPEND_LOG_COLUMNS: tuple[RawColumn, ...] = (
    _c("request_id", "request_id", STR, "Primary key: provider response id or call id."),
    _c("call_type", "call_type", STR, "Kind of call, e.g. acompletion, aembedding."),
    _c("api_key", "api_key", STR, "SHA-256 hash of the virtual key ('' when none)."),
    _c("spend", "spend", pa.float64(), "USD cost of the request as logged (float8)."),
    _c("total_tokens", "total_tokens", pa.int64(), "Total tokens."),
    _c("prompt_tokens", "prompt_tokens", pa.int64(), "Prompt (input) tokens."),
    _c("completion_tokens", "completion_tokens", pa.int64(), "Completion (output) tokens."),
    _c("start_time", "startTime", TS, "Request start, UTC."),
    _c("end_time", "endTime", TS, "Request end, UTC."),
    _c("completion_start_time", "completionStartTime", TS, "First token time, UTC."),
    _c("request_duration_ms", "request_duration_ms", pa.int64(), "Duration; newer proxies."),
    _c("model", "model", STR, "Model name sent to the provider."),
    _c("model_id", "model_id", STR, "Deployment id."),
    _c("model_group", "model_group", STR, "Public model name the client asked for."),
    _c("custom_llm_provider", "custom_llm_provider", STR, "Provider, e.g. openai."),
    _c("api_base", "api_base", STR, "Provider base URL."),
    _c("user_id", "user", STR, 'Internal user id of the key owner (source column "user").'),
    _c("end_user", "end_user", STR, "Customer id ('' when none)."),
    _c("team_id", "team_id", STR, "Key's team ('' when none)."),
    _c("organization_id", "organization_id", STR, "Key's organization; newer proxies."),
    _c("cache_hit", "cache_hit", STR, "'True', 'False' or ''."),
    _c("cache_key", "cache_key", STR, "Cache key hash or 'Cache OFF'."),
    _c("request_tags", "request_tags", STR, "JSON array of tags, as text."),
    _c("metadata", "metadata", STR, "Raw metadata JSON as text (model_map_information removed)."),
    _c("requester_ip_address", "requester_ip_address", STR, "Caller IP."),
    _c("session_id", "session_id", STR, "Trace / session id."),
    _c("status", "status", STR, "'success', 'failure', or NULL on pre-May-2025 rows."),
    _c("mcp_namespaced_tool_name", "mcp_namespaced_tool_name", STR, "MCP tool name."),
    _c("agent_id", "agent_id", STR, "Agent id; newer proxies."),
    _c("billing_agent_id", "billing_agent_id", STR, "Billed agent id; newer proxies."),
    _c("litellm_call_id", "litellm_call_id", STR, "Proxy call id; newer proxies."),
    _c("created_at", "created_at", TS, "Row insert time in the source; newer proxies."),
    _c("updated_at", "updated_at", TS, "Row update time in the source; newer proxies."),
    # Flattened from metadata at extract time (grouped-by keys, see proxy-db.md §8.8).
    _c("meta_key_alias", None, STR, "metadata.user_api_key_alias."),
    _c("meta_team_alias", None, STR, "metadata.user_api_key_team_alias."),
    _c("meta_organization_id", None, STR, "metadata.user_api_key_org_id."),
    _c("meta_user_email", None, STR, "metadata.user_api_key_user_email."),
    _c("meta_error_class", None, STR, "metadata.error_information.error_class (failures)."),
    _c("meta_error_code", None, STR, "metadata.error_information.error_code (failures)."),
    _c(
        "meta_project_id",
        None,
        STR,
        "metadata.user_api_key_project_id, '' when absent; NULL on rows landed before the column.",
    ),
    # Heavy payloads: NULL unless SPEND_WAREHOUSE_INCLUDE_PAYLOADS is on.
    _c("messages", "messages", STR, "Request messages JSON (opt-in)."),
    _c("response", "response", STR, "Response JSON (opt-in)."),
    _c("proxy_server_request", "proxy_server_request", STR, "Request body JSON (opt-in)."),
    # Load metadata.
    _c("_extracted_at", None, TS, "When this copy of the row was read from the source (UTC)."),
    _c("_batch_id", None, STR, "Extraction batch that stored this copy."),
)

ERROR_LOG_COLUMNS: tuple[RawColumn, ...] = (
    _c("request_id", "request_id", STR, "Primary key: a fresh uuid4 (not the request's id)."),
    _c("start_time", "startTime", TS, "Failure start, UTC."),
    _c("end_time", "endTime", TS, "Failure end, UTC."),
    _c("api_base", "api_base", STR, "Provider base URL."),
    _c("model_group", "model_group", STR, "Public model name."),
    _c("litellm_model_name", "litellm_model_name", STR, "Model name passed to the provider."),
    _c("model_id", "model_id", STR, "Deployment id."),
    _c("request_kwargs", "request_kwargs", STR, "Optional call parameters JSON as text."),
    _c("exception_type", "exception_type", STR, "Exception class, e.g. RateLimitError."),
    _c("exception_string", "exception_string", STR, "Exception message."),
    _c("status_code", "status_code", STR, "HTTP status as text."),
    _c("_extracted_at", None, TS, "When this copy of the row was read (UTC)."),
    _c("_batch_id", None, STR, "Extraction batch that stored this copy."),
)

# Entity snapshot tables: proxy table name -> raw table name. Columns keep their source names
# (already snake_case); JSON and array columns land as JSON text; secrets are never landed.
SNAPSHOT_TABLES: dict[str, str] = {
    "VerificationToken": "verification_tokens",
    "DeletedVerificationToken": "deleted_verification_tokens",
    "DeprecatedVerificationToken": "deprecated_verification_tokens",
    "UserTable": "users",
    "TeamTable": "teams",
    "DeletedTeamTable": "deleted_teams",
    "OrganizationTable": "organizations",
    "EndUserTable": "end_users",
    "TeamMembership": "team_memberships",
    "OrganizationMembership": "organization_memberships",
    "BudgetTable": "budgets",
    "ProxyModelTable": "proxy_models",
    "InvitationLink": "invitation_links",
    "UserNotifications": "user_notifications",
    "AuditLog": "audit_log",
    "TagTable": "tags",
    "ProjectTable": "projects",
    "DailyUserSpend": "daily_user_spend",
    "DailyTeamSpend": "daily_team_spend",
    "DailyOrganizationSpend": "daily_organization_spend",
    "DailyEndUserSpend": "daily_end_user_spend",
    "DailyTagSpend": "daily_tag_spend",
    "BudgetWindowSpend": "budget_window_spend",
}

# Snapshot tables that only grow: read incrementally on a timestamp (key, cursor column).
INCREMENTAL_SNAPSHOTS: dict[str, tuple[str, str]] = {"AuditLog": ("id", "updated_at")}

# Tables the proxy's docs mark optional (may be absent: skipped with one logged line).
OPTIONAL_TABLES = frozenset(
    {
        "OrganizationTable",
        "OrganizationMembership",
        "ProxyModelTable",
        "SpendLogs",
        "ErrorLogs",
        "DeletedVerificationToken",
        "DeprecatedVerificationToken",
        "DeletedTeamTable",
        "InvitationLink",
        "UserNotifications",
        "AuditLog",
        "TagTable",
        "ProjectTable",
        "DailyUserSpend",
        "DailyTeamSpend",
        "DailyOrganizationSpend",
        "DailyEndUserSpend",
        "DailyTagSpend",
        "BudgetWindowSpend",
    }
)

# Columns never landed: credentials and secrets.
SECRET_COLUMNS: dict[str, frozenset[str]] = {
    "UserTable": frozenset({"password"}),
    "ProxyModelTable": frozenset({"litellm_params"}),
}


def arrow_schema(columns: tuple[RawColumn, ...]) -> pa.Schema:
    """The Arrow schema of a raw fact table."""
    return pa.schema([pa.field(c.name, c.type) for c in columns])


# Text columns whose values are (nearly) unique per row: Parquet dictionary encoding only costs
# time on them. Every other text column is dictionary-encoded.
UNIQUE_TEXT_COLUMNS = frozenset(
    {
        "request_id",
        "session_id",
        "litellm_call_id",
        "metadata",
        "messages",
        "response",
        "proxy_server_request",
        "request_kwargs",
        "exception_string",
    }
)


def dictionary_columns(columns: tuple[RawColumn, ...]) -> list[str]:
    """Text columns worth Parquet dictionary encoding (few distinct values)."""
    return [c.name for c in columns if c.type == STR and c.name not in UNIQUE_TEXT_COLUMNS]


def content_columns(columns: tuple[RawColumn, ...]) -> tuple[str, ...]:
    """Names of the columns that carry source data (everything but load metadata ``_*``)."""
    return tuple(c.name for c in columns if not c.name.startswith("_"))


# Deterministic winner when one key was stored more than once with different values: a DuckDB
# ORDER BY over the raw columns (first row wins). ``{content_hash}`` is replaced by an md5 of the
# content columns, so that two copies that differ only in values still have a fixed order; the
# load-metadata columns come last and only separate identical copies.
DEDUP_ORDER: dict[str, str] = {
    "spend_logs": (
        "updated_at DESC NULLS LAST, end_time DESC NULLS LAST, {content_hash} DESC, "
        "_extracted_at ASC, _batch_id ASC"
    ),
    "error_logs": "end_time DESC NULLS LAST, {content_hash} DESC, _extracted_at ASC, _batch_id ASC",
}
