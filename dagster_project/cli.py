"""``spendwh``: every command a person runs by hand.

Each module in :mod:`dagster_project.commands` adds its subcommands through ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from dagster_project import commands
from dagster_project.settings import ConfigError


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
    except ConfigError as exc:
        print(f"spendwh: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spendwh: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
