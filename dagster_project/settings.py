"""One place for the project's configuration: environment variables, optionally from ``.env``.

The contract (README "Configuration"): every variable the README lists is read here, by
:func:`load_settings`, and nowhere else. The pipeline gets the result through the ``settings``
resource (:mod:`dagster_project.defs.resources`); commands call :func:`load_settings` once.
Nothing writes ``os.environ`` to pass configuration on.

The ``.env`` file is ``$SPEND_WAREHOUSE_ENV_FILE`` when that is set, else ``./.env``; variables
set in the process environment win over it, as with docker-compose and dbt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

DEFAULT_TABLE_PREFIX = "Dheera AI_"
UPSTREAM_TABLE_PREFIX = "LiteLLM_"
WAREHOUSE_FILE_NAME = "warehouse.duckdb"
ENV_FILE_ENV = "SPEND_WAREHOUSE_ENV_FILE"
SLACK_WEBHOOK_ENV = "SPEND_ALERTS_SLACK_WEBHOOK_URL"
WEBHOOK_ENV = "SPEND_ALERTS_WEBHOOK_URL"
WAREHOUSE_POSTGRES_URL_ENV = "WAREHOUSE_POSTGRES_URL"
SCHEDULE_ENV = "SPEND_WAREHOUSE_SCHEDULE"
ROLLBACK_SCHEDULE_ENV = "SPEND_WAREHOUSE_ROLLBACK_SCHEDULE"
DEFAULT_SCHEDULE = "*/15 * * * *"
DEFAULT_ROLLBACK_SCHEDULE = "30 3 * * *"
DEFAULT_POSTGRES_SCHEMA = "spend_warehouse"
DUCKDB_MEMORY_LIMIT_ENV = "SPEND_WAREHOUSE_DUCKDB_MEMORY_LIMIT"
DUCKDB_THREADS_ENV = "SPEND_WAREHOUSE_DUCKDB_THREADS"
# DuckDB's buffer memory in the dbt build and the alert evaluation (the extraction's merge keeps
# its own 128 MB): DuckDB spills to disk beyond it, so a run's peak stays bounded as the data
# grows instead of reaching 80 % of RAM. The default is a quarter of the machine's memory, at
# least 1 GB (default_memory_limit): less memory builds too, but spills and takes longer (the
# first build at 10 M rows: 54 s of dbt with 5.9 GB, 126 s with 1 GB).
MIN_DUCKDB_MEMORY_LIMIT_MB = 1024
DUCKDB_MEMORY_SHARE = 0.25
DEFAULT_DUCKDB_THREADS = 2
BUDGET_AS_OF_ENV = "SPEND_WAREHOUSE_BUDGET_AS_OF"
EXECUTOR_ENV = "SPEND_WAREHOUSE_EXECUTOR"
CELERY_BROKER_URL_ENV = "SPEND_WAREHOUSE_CELERY_BROKER_URL"
CELERY_BACKEND_URL_ENV = "SPEND_WAREHOUSE_CELERY_BACKEND_URL"
CELERY_QUEUE_ENV = "SPEND_WAREHOUSE_CELERY_QUEUE"
IN_PROCESS, MULTIPROCESS, CELERY = "in_process", "multiprocess", "celery"
EXECUTORS = (IN_PROCESS, MULTIPROCESS, CELERY)
# The local RabbitMQ (broker) and Redis (results) of a Debian/Ubuntu machine with the packages
# rabbitmq-server and redis-server: the defaults only when SPEND_WAREHOUSE_EXECUTOR=celery.
DEFAULT_CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CELERY_QUEUE = "spend_warehouse"
_BROKER_SCHEMES = {"amqp", "amqps", "pyamqp", "redis", "rediss"}
_BACKEND_SCHEMES = {"redis", "rediss", "rpc"}
_QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LAKE_FORMAT_ENV = "SPEND_WAREHOUSE_LAKE_FORMAT"
ICEBERG_CATALOG_URL_ENV = "SPEND_WAREHOUSE_ICEBERG_CATALOG_URL"
LAKE_URI_ENV = "SPEND_WAREHOUSE_LAKE_URI"
S3_ENDPOINT_ENV = "SPEND_WAREHOUSE_S3_ENDPOINT"
S3_ACCESS_KEY_ID_ENV = "SPEND_WAREHOUSE_S3_ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY_ENV = "SPEND_WAREHOUSE_S3_SECRET_ACCESS_KEY"
S3_REGION_ENV = "SPEND_WAREHOUSE_S3_REGION"
S3_SETTINGS_ENVS = (S3_ENDPOINT_ENV, S3_ACCESS_KEY_ID_ENV, S3_SECRET_ACCESS_KEY_ENV, S3_REGION_ENV)
DEFAULT_S3_REGION = "us-east-1"
PARQUET, ICEBERG = "parquet", "iceberg"  # SPEND_WAREHOUSE_LAKE_FORMAT
LAKE_FORMATS = (PARQUET, ICEBERG)
_SQLITE_SCHEMES = {"sqlite"}
_POSTGRES_CATALOG_SCHEMES = {"postgresql", "postgresql+psycopg", "postgresql+psycopg2"}

# s3://bucket[/prefix]: an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)
_LAKE_URI_PATTERN = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^\s]*)?$")
_REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_MEMORY_PATTERN = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,40}$")


class ConfigError(Exception):
    """A configuration problem, stated in one sentence that says what is wrong and how to fix it."""


def default_memory_limit(physical_bytes: int | None = None) -> str:
    """A quarter of the machine's memory (``physical_bytes``, default this machine's), at least
    1 GB, as a DuckDB memory size in MB."""
    if physical_bytes is None:
        physical_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    share = int(physical_bytes * DUCKDB_MEMORY_SHARE) // 2**20
    return f"{max(MIN_DUCKDB_MEMORY_LIMIT_MB, share)}MB"


@dataclass(frozen=True)
class PostgresTarget:
    """Where ``DBT_TARGET=postgres`` builds the marts (never the proxy's own database)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = field(default="", repr=False)
    dbname: str = "postgres"
    schema: str = DEFAULT_POSTGRES_SCHEMA
    raw_schema: str = f"{DEFAULT_POSTGRES_SCHEMA}_raw"

    @property
    def url(self) -> str:
        """The libpq connection string of the target database."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=str(self.port),
            user=self.user,
            password=self.password or None,
            dbname=self.dbname,
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a launched run executes its steps (``SPEND_WAREHOUSE_EXECUTOR``).

    ``in_process``: in the run worker's own process; ``multiprocess``: a child process per step;
    ``celery``: each step is a Celery task on the queue ``celery_queue`` of the broker, run by
    ``spendwh worker`` processes, with results in the result backend.
    """

    name: str = IN_PROCESS
    celery_broker_url: str | None = field(default=None, repr=False)
    celery_backend_url: str | None = field(default=None, repr=False)
    celery_queue: str = DEFAULT_CELERY_QUEUE


@dataclass(frozen=True)
class ObjectStore:
    """Where the lake's Iceberg tables live on S3-compatible storage (``SPEND_WAREHOUSE_LAKE_URI``).

    ``endpoint`` None: AWS S3. Keys None: the AWS SDK's own credential chain (instance role,
    ``~/.aws``). The local Parquet files stay where they are; the tables are uploaded copies.
    """

    uri: str  # s3://bucket/prefix, no trailing slash
    endpoint: str | None = None  # http(s)://host:port
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    region: str = DEFAULT_S3_REGION

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").partition("/")[0]

    @property
    def prefix(self) -> str:
        """The key prefix of the lake in the bucket (no leading or trailing slash; may be empty)."""
        return self.uri.removeprefix("s3://").partition("/")[2]


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one process."""

    database_url: str | None = field(default=None, repr=False)
    table_prefix: str = DEFAULT_TABLE_PREFIX
    warehouse_dir: Path = field(default_factory=lambda: Path("data"))
    dbt_target: str = "duckdb"
    budget_timezone: str = "UTC"
    budget_as_of: str | None = None
    include_payload_columns: bool = False
    schedule: str = DEFAULT_SCHEDULE
    rollback_schedule: str = DEFAULT_ROLLBACK_SCHEDULE
    reconcile_days: int = 3
    # a quiet read or a passing reconciliation stands this long while neither side changed
    # (0: never; lib/ingest/changes.py)
    unchanged_minutes: int = 60
    freshness_minutes: int = 30
    slack_webhook_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    alert_retry_base_seconds: float = 30.0
    postgres: PostgresTarget = field(default_factory=PostgresTarget)
    duckdb_memory_limit: str = field(default_factory=default_memory_limit)
    duckdb_threads: int = DEFAULT_DUCKDB_THREADS
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    lake_format: str = PARQUET
    # None with iceberg: the SQLite catalog file <lake_dir>/catalog.db (lib.ingest.lake.Lake)
    iceberg_catalog_url: str | None = field(default=None, repr=False)
    # with iceberg: the tables on S3-compatible object storage (None: on local disk)
    object_store: ObjectStore | None = None

    @property
    def duckdb_config(self) -> dict[str, str]:
        """DuckDB's resource limits, for every connection that builds the warehouse."""
        return {
            "memory_limit": self.duckdb_memory_limit,
            "threads": str(self.duckdb_threads),
            # tables are sets: without this, order-preserving operators hold rows in memory
            "preserve_insertion_order": "false",
        }

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


def validate_webhook_url(name: str, url: str | None) -> str | None:
    """An alert destination URL, or None when unset; the value is never echoed (a secret)."""
    url = (url or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(
            f"{name} is not an http(s) URL (value not shown: it is a secret); set it to the "
            "webhook URL, e.g. https://hooks.slack.com/services/..."
        )
    return url


def validate_cron(name: str, value: str) -> str:
    """A cron expression Dagster accepts, else :class:`ConfigError`."""
    from croniter import croniter

    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ConfigError(
            f"{name} {value!r} is not a five-field cron expression; use e.g. '*/15 * * * *'."
        )
    return value


def schedules_from(values: Mapping[str, str]) -> tuple[str, str]:
    """The cron expressions of the pipeline schedule and of the daily rollback."""
    return (
        validate_cron(SCHEDULE_ENV, values.get(SCHEDULE_ENV) or DEFAULT_SCHEDULE),
        validate_cron(
            ROLLBACK_SCHEDULE_ENV, values.get(ROLLBACK_SCHEDULE_ENV) or DEFAULT_ROLLBACK_SCHEDULE
        ),
    )


def validate_celery_url(name: str, url: str, schemes: set[str], example: str) -> str:
    """A Celery broker or result-backend URL; the value is never echoed (it may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or (parts.scheme != "rpc" and not parts.hostname):
        raise ConfigError(
            f"{name} is not a URL with one of the schemes {', '.join(sorted(schemes))} (value "
            f"not shown: it may hold a password); set it like {name}={example}, or unset it for "
            "the local default."
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name} has an invalid port ({exc}); use a number.") from exc
    return url


def executor_from(values: Mapping[str, str]) -> ExecutorSettings:
    """The executor of launched runs; the Celery broker, backend and queue when it is ``celery``."""
    name = (values.get(EXECUTOR_ENV) or "").strip() or IN_PROCESS
    if name not in EXECUTORS:
        raise ConfigError(
            f"{EXECUTOR_ENV}={name!r} is not an executor; set it to in_process (every step in "
            "the run's process, the default), multiprocess (a process per step) or celery "
            "(steps on Celery workers started with 'spendwh worker')."
        )
    if name != CELERY:
        return ExecutorSettings(name=name)
    queue = (values.get(CELERY_QUEUE_ENV) or "").strip() or DEFAULT_CELERY_QUEUE
    if not _QUEUE_PATTERN.match(queue):
        raise ConfigError(
            f"{CELERY_QUEUE_ENV}={queue!r} is not a queue name; use letters, digits, '_', '.' "
            f"and '-', e.g. {CELERY_QUEUE_ENV}={DEFAULT_CELERY_QUEUE}."
        )
    return ExecutorSettings(
        name=name,
        celery_broker_url=validate_celery_url(
            CELERY_BROKER_URL_ENV,
            (values.get(CELERY_BROKER_URL_ENV) or "").strip() or DEFAULT_CELERY_BROKER_URL,
            _BROKER_SCHEMES,
            "amqp://user:password@rabbitmq:5672//",
        ),
        celery_backend_url=validate_celery_url(
            CELERY_BACKEND_URL_ENV,
            (values.get(CELERY_BACKEND_URL_ENV) or "").strip() or DEFAULT_CELERY_BACKEND_URL,
            _BACKEND_SCHEMES,
            "redis://redis:6379/0",
        ),
        celery_queue=queue,
    )


def validate_budget_as_of(value: str | None) -> str | None:
    """The fixed evaluation instant of the budgets as naive UTC ``YYYY-MM-DD HH:MM:SS``, or None.

    Unset, each dbt build evaluates the budgets at its own start. A timestamp with an offset is
    converted to UTC; one without is read as UTC.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"{BUDGET_AS_OF_ENV}={text!r} is not a timestamp; set e.g. "
            f"{BUDGET_AS_OF_ENV}=2026-12-01T00:00:00Z, or unset it to evaluate at each run's start."
        ) from exc
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    return instant.strftime("%Y-%m-%d %H:%M:%S")


def validate_catalog_url(url: str) -> str:
    """An Iceberg SQL catalog URL (a SQLite file or PostgreSQL); never echoed (secrets).

    ``postgres://`` is spelled ``postgresql://`` for SQLAlchemy.
    """
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    if scheme in _SQLITE_SCHEMES:
        if not parts.path.strip("/"):
            raise ConfigError(
                f"{ICEBERG_CATALOG_URL_ENV} names no SQLite file (an in-memory catalog would lose "
                f"the lake); set it like {ICEBERG_CATALOG_URL_ENV}=sqlite:////var/lib/spend/"
                "catalog.db, or unset it for the file in the lake directory."
            )
    elif scheme in _POSTGRES_CATALOG_SCHEMES:
        if not (parts.hostname or parse_qs(parts.query).get("host")) or not parts.path.strip("/"):
            raise ConfigError(
                f"{ICEBERG_CATALOG_URL_ENV} needs a host and a database (value not shown: it may "
                f"hold a password); set it like {ICEBERG_CATALOG_URL_ENV}="
                "postgresql+psycopg://user:password@host:5432/iceberg_catalog."
            )
    else:
        raise ConfigError(
            f"{ICEBERG_CATALOG_URL_ENV} is neither a sqlite:/// nor a postgresql:// URL (value not "
            f"shown: it may hold a password); set it like {ICEBERG_CATALOG_URL_ENV}="
            "postgresql+psycopg://user:password@host:5432/iceberg_catalog, or unset it for a "
            "SQLite catalog in the lake directory."
        )
    return urlunsplit(parts._replace(scheme=scheme))


def lake_from(values: Mapping[str, str]) -> tuple[str, str | None]:
    """The lake's table format and, for ``iceberg``, its catalog URL (None: the default file)."""
    lake_format = (values.get(LAKE_FORMAT_ENV) or "").strip().lower() or PARQUET
    if lake_format not in LAKE_FORMATS:
        raise ConfigError(
            f"{LAKE_FORMAT_ENV}={lake_format!r} is not a lake format; set it to parquet (Parquet "
            "files and a JSON manifest per table, the default) or iceberg (Iceberg tables in a "
            "SQL catalog)."
        )
    url = (values.get(ICEBERG_CATALOG_URL_ENV) or "").strip()
    if not url:
        return lake_format, None
    if lake_format != ICEBERG:
        raise ConfigError(
            f"{ICEBERG_CATALOG_URL_ENV} is set but {LAKE_FORMAT_ENV} is {lake_format}; set "
            f"{LAKE_FORMAT_ENV}=iceberg to use the catalog, or unset {ICEBERG_CATALOG_URL_ENV}."
        )
    return lake_format, validate_catalog_url(url)


def validate_s3_endpoint(value: str) -> str:
    """An S3 endpoint ``http(s)://host[:port]`` (no path, no credentials; never echoed)."""
    parts = urlsplit(value)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.username
        or parts.path.strip("/")
    ):
        raise ConfigError(
            f"{S3_ENDPOINT_ENV} is not an http(s)://host:port URL (value not shown); set it like "
            f"{S3_ENDPOINT_ENV}=http://127.0.0.1:8333, or unset it for AWS S3."
        )
    return f"{parts.scheme}://{parts.netloc}"


def object_store_from(values: Mapping[str, str], lake_format: str) -> ObjectStore | None:
    """The object store of the Iceberg tables (``SPEND_WAREHOUSE_LAKE_URI``), or None (local).

    Secrets are never echoed: a message names the variable, never its value.
    """
    uri = (values.get(LAKE_URI_ENV) or "").strip().rstrip("/")
    s3 = {name: (values.get(name) or "").strip() for name in S3_SETTINGS_ENVS}
    if not uri:
        if stray := [name for name, value in s3.items() if value]:
            raise ConfigError(
                f"{stray[0]} is set but {LAKE_URI_ENV} is not; set {LAKE_URI_ENV}=s3://bucket/"
                f"prefix to keep the Iceberg tables there, or unset {stray[0]}."
            )
        return None
    if lake_format != ICEBERG:
        raise ConfigError(
            f"{LAKE_URI_ENV} is set but {LAKE_FORMAT_ENV} is {lake_format}; set "
            f"{LAKE_FORMAT_ENV}=iceberg (only Iceberg tables go to object storage), or unset "
            f"{LAKE_URI_ENV}."
        )
    if not _LAKE_URI_PATTERN.match(uri):
        raise ConfigError(
            f"{LAKE_URI_ENV} is not an s3://bucket/prefix URI with a valid bucket name; set it "
            f"like {LAKE_URI_ENV}=s3://spend-lake/warehouse, or unset it for local disk."
        )
    key_id, secret = s3[S3_ACCESS_KEY_ID_ENV], s3[S3_SECRET_ACCESS_KEY_ENV]
    if bool(key_id) != bool(secret):
        missing = S3_SECRET_ACCESS_KEY_ENV if key_id else S3_ACCESS_KEY_ID_ENV
        raise ConfigError(
            f"{missing} is not set but its pair is; set both {S3_ACCESS_KEY_ID_ENV} and "
            f"{S3_SECRET_ACCESS_KEY_ENV}, or neither to use the AWS credential chain."
        )
    region = s3[S3_REGION_ENV].lower() or DEFAULT_S3_REGION
    if not _REGION_PATTERN.match(region):
        raise ConfigError(
            f"{S3_REGION_ENV}={region!r} is not a region name; set it like {S3_REGION_ENV}="
            f"{DEFAULT_S3_REGION}, or unset it for {DEFAULT_S3_REGION}."
        )
    endpoint = s3[S3_ENDPOINT_ENV]
    return ObjectStore(
        uri=uri,
        endpoint=validate_s3_endpoint(endpoint) if endpoint else None,
        access_key_id=key_id or None,
        secret_access_key=secret or None,
        region=region,
    )


def validate_memory_limit(name: str, value: str | None) -> str:
    """A DuckDB memory size such as ``256MB`` or ``2GB`` (unset: :func:`default_memory_limit`)."""
    text = (value or "").strip() or default_memory_limit()
    if not _MEMORY_PATTERN.match(text):
        raise ConfigError(
            f"{name}={text!r} is not a memory size; set e.g. {name}=256MB or {name}=2GB."
        )
    return text.replace(" ", "")


def _positive_number(
    values: Mapping[str, str], name: str, default: float, kind=int, *, minimum: float | None = None
):
    """The number ``name`` holds: above zero, or at least ``minimum`` when given."""
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    try:
        number = kind(raw)
    except ValueError:
        number = None
    if number is None or (number < minimum if minimum is not None else number <= 0):
        wanted = "a positive number" if minimum is None else f"a number of at least {minimum}"
        raise ConfigError(f"{name}={raw!r} is not {wanted}; set e.g. {name}={default}.")
    return number


def postgres_target(values: Mapping[str, str]) -> PostgresTarget:
    """The postgres target from ``WAREHOUSE_POSTGRES_URL`` and/or ``DBT_POSTGRES_*``.

    Explicit ``DBT_POSTGRES_*`` variables win over the parts of the URL.
    """
    from_url: dict[str, str] = {}
    url = values.get(WAREHOUSE_POSTGRES_URL_ENV)
    if url:
        parts = urlsplit(url)
        host = parts.hostname or parse_qs(parts.query).get("host", [None])[0]  # socket dir
        if parts.scheme not in {"postgresql", "postgres"} or not host:
            raise ConfigError(
                f"{WAREHOUSE_POSTGRES_URL_ENV} must look like "
                f"postgresql://user:password@host:5432/db (got scheme {parts.scheme!r}); fix it "
                "or unset it and set DBT_POSTGRES_HOST etc."
            )
        from_url = {
            "HOST": host,
            "PORT": str(parts.port or 5432),
            "USER": unquote(parts.username or "postgres"),
            "PASSWORD": unquote(parts.password or ""),
            "DBNAME": parts.path.lstrip("/") or "postgres",
        }

    def pick(name: str, default: str) -> str:
        return values.get(f"DBT_POSTGRES_{name}") or from_url.get(name) or default

    port = pick("PORT", "5432")
    if not port.isdigit():
        raise ConfigError(f"DBT_POSTGRES_PORT {port!r} is not a port number; use e.g. 5432.")
    schema = pick("SCHEMA", DEFAULT_POSTGRES_SCHEMA)
    return PostgresTarget(
        host=pick("HOST", "127.0.0.1"),
        port=int(port),
        user=pick("USER", "postgres"),
        password=pick("PASSWORD", ""),
        dbname=pick("DBNAME", "postgres"),
        schema=schema,
        raw_schema=values.get("DBT_RAW_SCHEMA") or f"{schema}_raw",
    )


def env_file_path(env: Mapping[str, str]) -> Path:
    """The ``.env`` file: ``$SPEND_WAREHOUSE_ENV_FILE``, else ``./.env``."""
    configured = (env.get(ENV_FILE_ENV) or "").strip()
    return Path(configured).expanduser() if configured else Path.cwd() / ".env"


def config_values(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> dict[str, str]:
    """The raw variables: the ``.env`` file overlaid with the process environment."""
    environ = os.environ if env is None else env
    path = dotenv_path or env_file_path(environ)
    if dotenv_path is None and (environ.get(ENV_FILE_ENV) or "").strip() and not path.is_file():
        raise ConfigError(
            f"{ENV_FILE_ENV} points at {path}, which is not a file; create it (see .env.example) "
            f"or unset {ENV_FILE_ENV}."
        )
    values = _read_dotenv(path)
    values.update(environ)
    return values


def load_settings(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> Settings:
    """Read and validate settings from ``env`` (default: the process environment) and ``.env``."""
    values = config_values(env, dotenv_path)

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
    schedule, rollback_schedule = schedules_from(values)
    lake_format, iceberg_catalog_url = lake_from(values)
    return Settings(
        database_url=url,
        table_prefix=prefix,
        warehouse_dir=Path(values.get("SPEND_WAREHOUSE_DIR") or "data").expanduser().resolve(),
        dbt_target=target,
        budget_timezone=tz,
        budget_as_of=validate_budget_as_of(values.get(BUDGET_AS_OF_ENV)),
        include_payload_columns=_truthy(values.get("SPEND_WAREHOUSE_INCLUDE_PAYLOADS")),
        schedule=schedule,
        rollback_schedule=rollback_schedule,
        reconcile_days=_positive_number(values, "SPEND_WAREHOUSE_RECONCILE_DAYS", 3),
        unchanged_minutes=_positive_number(
            values, "SPEND_WAREHOUSE_UNCHANGED_MINUTES", 60, minimum=0
        ),
        freshness_minutes=_positive_number(values, "SPEND_WAREHOUSE_FRESHNESS_MINUTES", 30),
        slack_webhook_url=validate_webhook_url(SLACK_WEBHOOK_ENV, values.get(SLACK_WEBHOOK_ENV)),
        webhook_url=validate_webhook_url(WEBHOOK_ENV, values.get(WEBHOOK_ENV)),
        alert_retry_base_seconds=_positive_number(
            values, "SPEND_ALERTS_RETRY_BASE_SECONDS", 30.0, float
        ),
        postgres=postgres_target(values) if target == "postgres" else PostgresTarget(),
        duckdb_memory_limit=validate_memory_limit(
            DUCKDB_MEMORY_LIMIT_ENV, values.get(DUCKDB_MEMORY_LIMIT_ENV)
        ),
        duckdb_threads=_positive_number(values, DUCKDB_THREADS_ENV, DEFAULT_DUCKDB_THREADS),
        executor=executor_from(values),
        lake_format=lake_format,
        iceberg_catalog_url=iceberg_catalog_url,
        object_store=object_store_from(values, lake_format),
    )
