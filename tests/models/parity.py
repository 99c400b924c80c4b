"""Row-for-row comparison of the marts another dbt target built with DuckDB's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from tests.models.dbt_runner import MARTS


def _normalize(value):
    """Decimals without trailing zeros; timestamps of an instant type (Spark's, read back from
    its parquet files) as naive UTC; JSON text the engines re-serialize (an audit row's nested
    object: PostgreSQL's jsonb orders keys and spaces them, DuckDB keeps them as written) in one
    canonical form."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def _rows(cursor_rows: Iterable[tuple]) -> list[tuple]:
    return sorted(
        (tuple(_normalize(v) for v in row) for row in cursor_rows),
        key=lambda row: tuple((v is None, str(v)) for v in row),
    )


def assert_marts_equal(
    duckdb_path: Path, other_rows: Callable[[str, str], Iterable[tuple]], engine: str
) -> int:
    """Assert that every mart of MARTS has the same rows on the other target as in the DuckDB
    build at ``duckdb_path``; ``other_rows(mart, select_list)`` selects the other target's rows
    of the comma-separated columns. Return the number of rows compared."""
    compared = 0
    with duckdb.connect(str(duckdb_path), read_only=True) as duck:
        for mart in MARTS:
            columns = [
                r[0]
                for r in duck.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'main' and table_name = ? order by ordinal_position",
                    [mart],
                ).fetchall()
            ]
            select_list = ", ".join(columns)
            duck_rows = _rows(duck.execute(f"select {select_list} from main.{mart}").fetchall())
            assert duck_rows, f"{mart} is empty on DuckDB"
            assert _rows(other_rows(mart, select_list)) == duck_rows, (
                f"{mart} differs between {engine} and DuckDB"
            )
            compared += len(duck_rows)
    return compared
