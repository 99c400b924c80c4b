"""One place for the project's configuration: environment variables, optionally from `.env`.

The contract (README "Configuration"):

- ``DATABASE_URL``: the proxy's PostgreSQL (source, read-only use). Unset = demo mode.
- ``PROXY_TABLE_PREFIX``: table-name prefix, default ``Dheera AI_`` (upstream: ``LiteLLM_``).
- ``SPEND_WAREHOUSE_DIR``: where the Parquet lake and the DuckDB file live, default ``./data``.

Everything is read lazily through :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

DEFAULT_TABLE_PREFIX = "Dheera AI_"
UPSTREAM_TABLE_PREFIX = "LiteLLM_"
WAREHOUSE_FILE_NAME = "warehouse.duckdb"

_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,40}$")


class ConfigError(Exception):
    """A configuration problem, stated in one sentence that says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one process."""

    database_url: str | None
    table_prefix: str = DEFAULT_TABLE_PREFIX
    warehouse_dir: Path = field(default_factory=lambda: Path("data"))
    dbt_target: str = "duckdb"
    budget_timezone: str = "UTC"
    include_payload_columns: bool = False

    @property
    def warehouse_path(self) -> Path:
        """The analysts' DuckDB file: a read-only copy published after every successful run."""
        return self.warehouse_dir / WAREHOUSE_FILE_NAME

    @property
    def build_path(self) -> Path:
        """The pipeline's working DuckDB file (one writer at a time; never opened by analysts)."""
        return self.state_dir / "build.duckdb"

    @property
    def lake_dir(self) -> Path:
        """Root of the Parquet lake."""
        return self.warehouse_dir / "lake"

    @property
    def state_dir(self) -> Path:
        """Pipeline state that is not data: delivery log, locks, embedded database."""
        return self.warehouse_dir / "state"


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def validate_database_url(url: str) -> str:
    """Return ``url`` if it is a usable PostgreSQL URL, else raise :class:`ConfigError`."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ConfigError(
            f"DATABASE_URL must start with postgresql:// (got scheme {parts.scheme!r}); "
            "set it to the proxy's URL, e.g. postgresql://user:password@host:5432/litellm."
        )
    host_in_query = parse_qs(parts.query).get("host")
    if not parts.hostname and not host_in_query:
        raise ConfigError(
            "DATABASE_URL has no host; set it like postgresql://user:password@host:5432/dbname."
        )
    if not parts.path.strip("/"):
        raise ConfigError(
            "DATABASE_URL names no database; add it after the host, e.g. .../litellm."
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL has an invalid port ({exc}); use a number.") from exc
    return url


def validate_prefix(prefix: str) -> str:
    """Return the table prefix if it is plausible, else raise :class:`ConfigError`."""
    if not _PREFIX_PATTERN.match(prefix) or '"' in prefix:
        raise ConfigError(
            f"PROXY_TABLE_PREFIX {prefix!r} is not a table-name prefix; use 'Dheera AI_' "
            "(the Dheera AI Proxy) or 'LiteLLM_' (upstream LiteLLM)."
        )
    return prefix


def load_settings(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> Settings:
    """Read and validate settings from ``env`` (default: the process environment) and ``.env``.

    Process variables win over the ``.env`` file, like docker-compose and dbt do.
    """
    values: dict[str, str] = _read_dotenv(dotenv_path or Path.cwd() / ".env")
    values.update(os.environ if env is None else env)

    url = values.get("DATABASE_URL") or None
    if url is not None:
        validate_database_url(url)
    prefix = validate_prefix(values.get("PROXY_TABLE_PREFIX") or DEFAULT_TABLE_PREFIX)
    target = values.get("DBT_TARGET") or "duckdb"
    if target not in {"duckdb", "postgres"}:
        raise ConfigError(f"DBT_TARGET {target!r} is unknown; use 'duckdb' or 'postgres'.")
    tz = values.get("BUDGET_TIMEZONE") or "UTC"
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ConfigError(
            f"BUDGET_TIMEZONE {tz!r} is not an IANA time zone; use e.g. 'UTC' or 'Europe/Berlin'."
        ) from exc
    return Settings(
        database_url=url,
        table_prefix=prefix,
        warehouse_dir=Path(values.get("SPEND_WAREHOUSE_DIR") or "data").expanduser().resolve(),
        dbt_target=target,
        budget_timezone=tz,
        include_payload_columns=_truthy(values.get("SPEND_WAREHOUSE_INCLUDE_PAYLOADS")),
    )
