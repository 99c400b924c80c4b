"""PostgreSQL identifiers and literals for the proxy's prefixed tables.

The Dheera AI Proxy names its tables ``"Dheera AI_<Name>"`` (a space and mixed case), upstream
LiteLLM ``"LiteLLM_<Name>"``. Every identifier built here is double-quoted; catalog look-ups use
the plain (unquoted) string.
"""

from __future__ import annotations

import re
from datetime import datetime


def quote_ident(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier (doubling embedded quotes)."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def table_name(prefix: str, name: str) -> str:
    """The catalog name of proxy table ``name`` (e.g. ``SpendLogs``) under ``prefix``."""
    return f"{prefix}{name}"


def quoted_table(prefix: str, name: str, schema: str | None = None) -> str:
    """The quoted, optionally schema-qualified reference to a proxy table."""
    ref = quote_ident(table_name(prefix, name))
    return f"{quote_ident(schema)}.{ref}" if schema else ref


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``VerificationToken`` -> ``verification_token``; ``startTime`` -> ``start_time``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def sql_timestamp(value: datetime) -> str:
    """A PostgreSQL ``timestamp`` literal with exact microseconds (cursor values round-trip)."""
    if value.tzinfo is not None:
        raise ValueError(f"cursor values are naive UTC, got {value!r}")
    return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='microseconds')}'"


def sql_string(value: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + value.replace("'", "''") + "'"
