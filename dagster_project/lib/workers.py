"""Steps on workers: the executor of launched runs, and the Celery worker that runs their steps.

``SPEND_WAREHOUSE_EXECUTOR`` (:class:`~dagster_project.settings.ExecutorSettings`) names the
executor of every job of the code location (:func:`executor_def`). With ``celery`` (dagster-celery),
the run worker the daemon launches no longer executes the steps: it submits each step, as it
becomes ready, as a Celery task to the queue ``SPEND_WAREHOUSE_CELERY_QUEUE`` of the broker
(RabbitMQ by default), waits for its result in the result backend (Redis by default), and goes on
with the next steps. ``spendwh worker`` (:func:`worker_app`, :func:`worker_argv`) consumes that
queue: each task loads the code location, opens the Dagster instance the run worker named, and
executes the step there, writing its events, logs and outputs where the run worker would have.

Both ends build their Celery app from the same settings (:func:`celery_config`), so a daemon and a
worker started from the same ``.env`` meet on the same queue. Dagster's pools still apply: the
run worker claims the ``spend_warehouse_writer`` slot before it submits a step that writes the
build database, so those steps take turns across workers too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from dagster_project.settings import (
    CELERY,
    CELERY_BACKEND_URL_ENV,
    CELERY_BROKER_URL_ENV,
    EXECUTOR_ENV,
    IN_PROCESS,
    MULTIPROCESS,
    ConfigError,
    ExecutorSettings,
)

CONNECT_TIMEOUT_S = 5.0


def celery_config(executor: ExecutorSettings) -> dict[str, Any]:
    """Settings of the Celery app of both ends (dagster-celery's defaults, plus these)."""
    return {
        # The queue of every step (dagster-celery sends a step without a queue tag here); the
        # worker consumes it. One queue per deployment lets deployments share a broker.
        "task_default_queue": executor.celery_queue,
        # A worker reserves one step at a time: a long dbt build holds no other step hostage.
        "worker_prefetch_multiplier": 1,
        # The broker is waited for at start-up (`spendwh worker` checked it can be reached).
        "broker_connection_retry_on_startup": True,
        # What the steps print (Dagster's event lines, dbt's output) is logged as INFO.
        "worker_redirect_stdouts_level": "INFO",
    }


def celery_executor_def(executor: ExecutorSettings) -> dg.ExecutorDefinition:
    """dagster-celery's executor, configured with the broker, backend and queue of ``executor``.

    The values are bound here, not exposed as run configuration: the URLs may hold passwords.
    """
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": executor.celery_broker_url,
            "backend": executor.celery_backend_url,
            "config_source": celery_config(executor),
        },
        name=CELERY,
    )


def executor_def(executor: ExecutorSettings) -> dg.ExecutorDefinition:
    """The executor the setting names."""
    if executor.name == IN_PROCESS:
        return dg.in_process_executor
    if executor.name == MULTIPROCESS:
        return dg.multiprocess_executor
    return celery_executor_def(executor)


def require_celery(executor: ExecutorSettings) -> ExecutorSettings:
    """``executor`` if it sends steps to Celery workers, else :class:`ConfigError`."""
    if executor.name != CELERY:
        raise ConfigError(
            f"{EXECUTOR_ENV} is {executor.name}: runs execute their steps themselves and send "
            f"none to a worker; set {EXECUTOR_ENV}=celery in the .env of the daemon and of the "
            "worker (then restart the daemon)."
        )
    return executor


def _address(url: str) -> str:
    """``host:port`` of a broker or backend URL (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def unreachable_celery_services(executor: ExecutorSettings) -> list[str]:
    """One sentence per service of ``executor`` (broker, result backend) that does not answer."""
    from kombu import Connection

    problems = []
    broker = str(executor.celery_broker_url)
    try:
        with Connection(broker, connect_timeout=CONNECT_TIMEOUT_S) as connection:
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 (any failure means: no broker for the steps)
        problems.append(
            f"the Celery broker {CELERY_BROKER_URL_ENV} at {_address(broker)} does not answer "
            f"({type(exc).__name__}: {' '.join(str(exc).split())}); start it (RabbitMQ: "
            f"rabbitmq-server -detached) or point {CELERY_BROKER_URL_ENV} at a running one"
        )
    backend = str(executor.celery_backend_url)
    if urlsplit(backend).scheme in {"redis", "rediss"}:
        import redis

        try:
            redis.Redis.from_url(
                backend,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=CONNECT_TIMEOUT_S,
            ).ping()
        except redis.RedisError as exc:
            problems.append(
                f"the Celery result backend {CELERY_BACKEND_URL_ENV} at {_address(backend)} "
                f"does not answer ({type(exc).__name__}: {' '.join(str(exc).split())}); start "
                f"it (redis-server --daemonize yes) or point {CELERY_BACKEND_URL_ENV} at a "
                "running one"
            )
    return problems


def check_celery_services(executor: ExecutorSettings) -> None:
    """Raise :class:`ConfigError` naming every service of ``executor`` that does not answer."""
    problems = unreachable_celery_services(executor)
    if problems:
        raise ConfigError("; ".join(problems) + ".")


def worker_app(executor: ExecutorSettings):
    """The Celery app of a worker: dagster-celery's step task, on the settings' broker."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    app = make_app(
        CeleryExecutor.for_cli(
            broker=executor.celery_broker_url,
            backend=executor.celery_backend_url,
            config_source=celery_config(executor),
        ).app_args()
    )
    create_task(app)
    return app


def worker_argv(
    executor: ExecutorSettings, name: str, concurrency: int = 1, loglevel: str = "INFO"
) -> list[str]:
    """The arguments of ``celery worker`` for a worker called ``name`` on the settings' queue."""
    return [
        "worker",
        f"--queues={executor.celery_queue}",
        f"--hostname={name}@%h",
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        f"--loglevel={loglevel}",
        # no start-up synchronisation with the other workers: they share no state
        "--without-mingle",
        "--without-gossip",
    ]
