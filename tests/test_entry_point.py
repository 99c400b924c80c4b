"""``.venv/bin/spendwh`` works without an activated virtualenv, as cron and systemd start it.

A fresh checkout has no ``dbt/target/manifest.json``: loading the definitions runs ``dbt parse``,
which must find the ``dbt`` beside this Python although it is not on ``PATH``.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from dagster_project.settings import REPO_ROOT
from tests.ingest.helpers import insert_spend, spend_row, utcnow
from tests.spendwh import PLAIN_PATH, run_spendwh

pytestmark = pytest.mark.integration


def fresh_checkout(root: Path) -> Path:
    """The code and the dbt project as a clone has them (no dbt artifacts), under ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages")
    for name in ("dagster_project", "dbt"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=ignore)
    shutil.copy2(REPO_ROOT / "pyproject.toml", root)
    return root


def test_run_on_a_fresh_checkout_without_the_virtualenv_on_path(make_source, tmp_path):
    assert not shutil.which("dbt", path=PLAIN_PATH), "a dbt on the plain PATH hides the bug"
    checkout = fresh_checkout(tmp_path / "checkout")
    manifest = checkout / "dbt" / "target" / "manifest.json"
    source = make_source()
    insert_spend(source, [spend_row(f"r{i}", utcnow() - timedelta(hours=i)) for i in range(3)])

    result = run_spendwh(
        ["run", "--extract-only"],
        cwd=tmp_path,
        env={
            "PYTHONPATH": str(checkout),  # import the copy, whose dbt project has no manifest
            "DATABASE_URL": source.url,
            "PROXY_TABLE_PREFIX": source.prefix,
            "SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"),
        },
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert manifest.is_file(), "the definitions were not loaded from the fresh checkout"
    assert "ok    raw/spend_logs status=present rows_read=3 rows_stored=3" in result.stdout
