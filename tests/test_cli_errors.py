"""Which failures ``spendwh`` turns into one sentence and an exit code, and which stay tracebacks.

The subprocess tests of each case are in ``test_cli_check.py`` (source, warehouse in use) and
``test_entry_point.py`` (dbt missing); no command reaches a missing warehouse yet (``spendwh demo``
reads it only after publishing it), so that case is shown here on the real reader.
"""

from __future__ import annotations

import errno

import pytest

from dagster_project.cli import (
    EXIT_CONFIG,
    EXIT_NO_INPUT,
    EXIT_TRY_AGAIN,
    EXIT_UNAVAILABLE,
    known_failure,
)
from dagster_project.lib.duckdb import WarehouseBusyError, connect_reader
from dagster_project.settings import ConfigError


def test_no_warehouse_yet_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError) as caught, connect_reader(tmp_path / "warehouse.duckdb"):
        pass
    message, code = known_failure(caught.value)
    assert code == EXIT_NO_INPUT
    assert message == (
        f"no warehouse at {tmp_path / 'warehouse.duckdb'}; run 'spendwh run' (or 'make demo') "
        "to build it"
    )


def test_a_failure_wrapped_by_dagster_is_found_in_the_chain():
    inner = ConfigError("DBT_TARGET must be duckdb or postgres;\n  set one of them.")
    outer = RuntimeError("Error while loading definitions")
    outer.__cause__ = inner
    assert known_failure(outer) == (
        "configuration error: DBT_TARGET must be duckdb or postgres; set one of them.",
        EXIT_CONFIG,
    )


def test_busy_and_missing_dbt():
    assert known_failure(WarehouseBusyError("x is open in process 1 (duckdb)"))[1] == EXIT_TRY_AGAIN
    message, code = known_failure(FileNotFoundError(errno.ENOENT, "No such file", "/v/bin/dbt"))
    assert code == EXIT_UNAVAILABLE
    assert "dbt is not installed" in message


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/lake/_manifest.json"),
        KeyError("spend_logs"),
        RuntimeError("unexpected"),
    ],
)
def test_anything_else_is_a_bug_and_keeps_its_traceback(error):
    assert known_failure(error) is None
