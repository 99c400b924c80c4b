"""Static catalog of the simulated proxy: model deployments, prices, failure kinds, user agents.

Prices are per token in USD, in the range of the public list prices of each model (the proxy's
``model_prices_and_context_window.json``). Nothing here is a credential: the ``api_key`` a
``ProxyModelTable`` row would carry is a placeholder naming an environment variable.
"""

from __future__ import annotations

from dataclasses import dataclass

BUDGET_DURATIONS: tuple[str | None, ...] = ("1d", "7d", "30d", "1mo", "1h", None)
"""Budget durations the population uses (``None`` = never resets)."""

MASTER_KEY = "litellm_proxy_master_key"
"""``SpendLogs.api_key`` of master-key calls when the proxy does not hash the master key."""

ADMIN_USER_ID = "default_user_id"
"""The proxy admin's user id, owner of master-key calls."""

INSTANCE_COUNT = 3
"""Proxy instances (pods), each with its own spend-log queue and flush timer."""

FLUSH_INTERVAL_S = 10.0
"""``proxy_batch_write_at``: seconds between two flushes of one instance."""

FLUSH_JITTER_S = 5.0
"""Random 0..jitter seconds added to every flush."""


@dataclass(frozen=True)
class ModelSpec:
    """One model deployment behind a public model name (model group)."""

    model_group: str
    model: str
    provider: str
    api_base: str
    input_cost_per_token: float
    output_cost_per_token: float
    call_type: str
    weight: float
    latency_ms: float
    ms_per_output_token: float
    in_db: bool

    @property
    def is_embedding(self) -> bool:
        """Embedding calls have prompt tokens only."""
        return self.call_type == "aembedding"


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "gpt-4o",
        "gpt-4o",
        "openai",
        "https://api.openai.com/v1",
        2.5e-6,
        10e-6,
        "acompletion",
        14,
        700,
        12,
        True,
    ),
    ModelSpec(
        "gpt-4o",
        "azure/gpt-4o-eu",
        "azure",
        "https://dheera-eu.openai.azure.com",
        2.5e-6,
        10e-6,
        "acompletion",
        8,
        800,
        13,
        True,
    ),
    ModelSpec(
        "gpt-4o-mini",
        "gpt-4o-mini",
        "openai",
        "https://api.openai.com/v1",
        0.15e-6,
        0.6e-6,
        "acompletion",
        26,
        450,
        7,
        False,
    ),
    ModelSpec(
        "claude-sonnet",
        "claude-3-5-sonnet-20241022",
        "anthropic",
        "https://api.anthropic.com",
        3e-6,
        15e-6,
        "acompletion",
        12,
        900,
        16,
        True,
    ),
    ModelSpec(
        "claude-haiku",
        "claude-3-5-haiku-20241022",
        "anthropic",
        "https://api.anthropic.com",
        0.8e-6,
        4e-6,
        "acompletion",
        8,
        500,
        8,
        False,
    ),
    ModelSpec(
        "claude-haiku",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "bedrock",
        "https://bedrock-runtime.eu-central-1.amazonaws.com",
        0.25e-6,
        1.25e-6,
        "acompletion",
        4,
        600,
        9,
        True,
    ),
    ModelSpec(
        "gemini-pro",
        "vertex_ai/gemini-1.5-pro",
        "vertex_ai",
        "https://europe-west4-aiplatform.googleapis.com",
        1.25e-6,
        5e-6,
        "acompletion",
        5,
        1100,
        11,
        False,
    ),
    ModelSpec(
        "gemini-flash",
        "vertex_ai/gemini-2.0-flash",
        "vertex_ai",
        "https://europe-west4-aiplatform.googleapis.com",
        0.1e-6,
        0.4e-6,
        "acompletion",
        9,
        350,
        5,
        True,
    ),
    ModelSpec(
        "mistral-large",
        "mistral/mistral-large-latest",
        "mistral",
        "https://api.mistral.ai/v1",
        2e-6,
        6e-6,
        "acompletion",
        3,
        800,
        14,
        False,
    ),
    ModelSpec(
        "text-embedding-3-small",
        "text-embedding-3-small",
        "openai",
        "https://api.openai.com/v1",
        0.02e-6,
        0.0,
        "aembedding",
        11,
        120,
        0,
        True,
    ),
)


@dataclass(frozen=True)
class FailureKind:
    """A provider or proxy error: exception class, HTTP status, message, share of failures."""

    exception_type: str
    status_code: str
    message: str
    weight: float


FAILURES: tuple[FailureKind, ...] = (
    FailureKind("RateLimitError", "429", "Rate limit reached for requests", 40),
    FailureKind(
        "InternalServerError", "500", "The server had an error processing your request", 20
    ),
    FailureKind("Timeout", "408", "Request timed out after 600.0 seconds", 12),
    FailureKind("ServiceUnavailableError", "503", "The model is overloaded, try again later", 12),
    FailureKind("BadRequestError", "400", "This model's maximum context length is exceeded", 10),
    FailureKind("ContextWindowExceededError", "400", "prompt is too long: 210544 tokens", 6),
)

AUTH_FAILURE = FailureKind(
    "AuthenticationError", "401", "Authentication Error, No api key passed in.", 0
)
"""Failures of requests without a usable key (``SpendLogs.api_key`` = ``''``)."""

BUDGET_FAILURE = FailureKind(
    "BudgetExceededError", "400", "Budget has been exceeded! Key spend is over its max_budget", 0
)
"""Requests refused at authentication because their key's spend reached its ``max_budget``
(upstream raises ``litellm.BudgetExceededError``, HTTP 400)."""

USER_AGENTS: tuple[str, ...] = (
    "OpenAI/Python 1.55.3",
    "OpenAI/Python 1.82.0",
    "OpenAI/JS 4.73.0",
    "langchain-openai/0.2.10",
    "Anthropic/Python 0.40.0",
    "litellm/1.74.9",
    "curl/8.5.0",
    "python-requests/2.32.3",
)

EXTRA_TAGS: tuple[str, ...] = (
    "prod",
    "staging",
    "feature:summarize",
    "feature:search",
    "feature:chat",
    "batch-job",
    "eval",
)

FIRST_NAMES: tuple[str, ...] = (
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "dennis",
    "barbara",
    "ken",
    "frances",
    "john",
    "radia",
    "tim",
    "edsger",
    "donald",
    "sophie",
    "guido",
    "anita",
    "leslie",
    "karen",
    "niklaus",
)

TEAM_NAMES: tuple[str, ...] = (
    "search",
    "support-bot",
    "data-science",
    "platform",
    "growth",
    "legal-review",
    "mobile",
    "risk",
    "marketing",
    "research",
    "finance-ops",
    "docs",
    "sales-assist",
    "qa",
)

ORG_NAMES: tuple[str, ...] = ("acme-retail", "acme-bank", "acme-health", "acme-labs", "acme-media")
