"""``spendwh worker``: a Celery worker that executes the pipeline's steps (executor ``celery``).

Reads the same settings as the daemon (the process environment and the ``.env`` file): the
broker, the result backend and the queue the daemon's runs send their steps to. It checks that
the broker and the backend answer (one line and exit code 2 when not), then runs in the
foreground until Ctrl-C / SIGTERM (a warm shutdown: the step in progress finishes first).

A step runs in a child process of the worker, on the Dagster instance of the run that sent it,
with the project's settings: the worker needs what a run worker would have, i.e. this
checkout, the same ``SPEND_WAREHOUSE_DIR`` (a shared file system on another host) and, with
a PostgreSQL-backed instance, ``DAGSTER_POSTGRES_URL`` in its environment (the systemd units load
the ``.env`` into it; by hand: ``set -a; . ./.env; set +a``).
"""

from __future__ import annotations

import argparse
import re
import socket
import uuid

from dagster_project.settings import ConfigError, load_settings

DEFAULT_CONCURRENCY = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``worker`` subcommand."""
    parser = subparsers.add_parser(
        "worker",
        help="run the pipeline's steps from the Celery queue (SPEND_WAREHOUSE_EXECUTOR=celery)",
        description=(
            "Starts a Celery worker on the broker, result backend and queue of the settings "
            "(SPEND_WAREHOUSE_CELERY_*), which executes the steps of the runs the daemon or the "
            "UI launches when SPEND_WAREHOUSE_EXECUTOR=celery. Runs until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the worker's name (default spendwh-<random>); Celery calls it NAME@<host>",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=(
            f"steps at a time (default {DEFAULT_CONCURRENCY}: the steps that write the build "
            "database take turns anyway)"
        ),
    )
    parser.add_argument("--loglevel", default="INFO", help="Celery's log level (default INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the services, then run the worker in the foreground."""
    from dagster_project.lib.postgres import redact
    from dagster_project.lib.workers import (
        check_celery_services,
        require_celery,
        worker_app,
        worker_argv,
    )

    if args.concurrency < 1:
        raise ConfigError(f"--concurrency {args.concurrency} is not a positive number; use e.g. 1.")
    if args.name is not None and not _NAME.match(args.name):
        raise ConfigError(
            f"--name {args.name!r} is not a worker name; use letters, digits, '_', '.' and '-'."
        )
    executor = require_celery(load_settings().executor)
    check_celery_services(executor)
    name = args.name or f"spendwh-{uuid.uuid4().hex[:6]}"
    print(
        f"spendwh worker: {name}@{socket.gethostname()} runs steps from queue "
        f"{executor.celery_queue} of {redact(str(executor.celery_broker_url))}, results to "
        f"{redact(str(executor.celery_backend_url))}",
        flush=True,
    )
    worker_app(executor).worker_main(
        worker_argv(executor, name, concurrency=args.concurrency, loglevel=args.loglevel)
    )
    return 0
