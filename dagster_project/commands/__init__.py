"""Subcommands of ``spendwh``: one module per area, each with ``register(subparsers)``."""
