"""``spendwh``: every command a person runs by hand.

Each module in :mod:`dagster_project.commands` adds its subcommands through ``register``.

A failure the user can fix is one line on stderr and an exit code, never a traceback:

====  ==============================================================================
2     configuration error (a setting, an unreachable or wrong database, a busy port)
66    no warehouse (or alert ledger) yet: run ``spendwh run`` first
69    dbt is not installed beside this Python: run ``make install``
75    the warehouse is in use by another process, or was corrupt and moved aside: retry
130   interrupted (Ctrl-C)
====  ==============================================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from pathlib import Path

from dagster_project import commands
from dagster_project.lib.duckdb import CorruptDatabaseError, WarehouseBusyError
from dagster_project.settings import ConfigError

EXIT_CONFIG = 2
EXIT_NO_INPUT = 66
EXIT_UNAVAILABLE = 69
EXIT_TRY_AGAIN = 75
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The ``spendwh`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="spendwh",
        description="Spend warehouse for the Dheera AI / LiteLLM proxy: extract, model, alert.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (Dagster wraps errors raised while loading definitions)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def known_failure(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of a failure the user can fix; None for a bug."""
    for cause in _causes(exc):
        text = " ".join(str(cause).split())
        if isinstance(cause, ConfigError):
            return f"configuration error: {text}", EXIT_CONFIG
        if isinstance(cause, WarehouseBusyError | CorruptDatabaseError):
            return text, EXIT_TRY_AGAIN
        if isinstance(cause, FileNotFoundError | PermissionError) and cause.filename:
            if Path(str(cause.filename)).name == "dbt":
                return (
                    f"dbt is not installed beside {sys.executable} ({cause.filename}: "
                    f"{cause.strerror}); run 'make install' (uv sync --frozen) to install it",
                    EXIT_UNAVAILABLE,
                )
        elif isinstance(cause, FileNotFoundError) and cause.errno is None:
            return text, EXIT_NO_INPUT  # ours: "no warehouse at ...; run 'spendwh run' ..."
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spendwh`` script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # embedded server chatter
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("spendwh: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = known_failure(exc)
        if failure is None:
            raise  # a bug: the traceback is what its reader needs
        message, code = failure
        print(f"spendwh: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
