"""``.venv/bin/spendwh`` works without an activated virtualenv, as cron and systemd start it.

A fresh checkout has no ``dbt/target/manifest.json``: loading the definitions runs ``dbt parse``,
which must find the ``dbt`` beside this Python although it is not on ``PATH``. Where there is no
dbt at all, the commands that need it say so in one sentence.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from datetime import timedelta
from pathlib import Path

import pytest

from dagster_project.cli import EXIT_UNAVAILABLE
from dagster_project.settings import REPO_ROOT
from tests.duckdb_files import build_database
from tests.ingest.helpers import insert_spend, spend_row, utcnow
from tests.spendwh import PLAIN_PATH, assert_one_sentence, run_spendwh

pytestmark = pytest.mark.integration


def fresh_checkout(root: Path) -> Path:
    """The code and the dbt project as a clone has them (no dbt artifacts), under ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages")
    for name in ("dagster_project", "dbt"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=ignore)
    shutil.copy2(REPO_ROOT / "pyproject.toml", root)
    return root


@pytest.fixture(scope="module")
def python_without_dbt(tmp_path_factory) -> Path:
    """The Python of a virtualenv that sees this one's packages but has no dbt executable."""
    assert not shutil.which("dbt", path=PLAIN_PATH), "a dbt on the plain PATH would be found"
    venv = tmp_path_factory.mktemp("no-dbt") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / version / "site-packages"
    (site_packages / "spend_warehouse.pth").write_text(
        f"{sysconfig.get_paths()['purelib']}\n{REPO_ROOT}\n", encoding="utf-8"
    )
    assert not (venv / "bin" / "dbt").exists()
    return venv / "bin" / "python"


def _run_extract(source, tmp_path, checkout: Path, python: Path | None = None):
    """``spendwh run --extract-only`` importing the code of ``checkout``."""
    return run_spendwh(
        ["run", "--extract-only"],
        cwd=tmp_path,
        env={
            "PYTHONPATH": str(checkout),  # import the copy, whose dbt project has no manifest
            "DATABASE_URL": source.url,
            "PROXY_TABLE_PREFIX": source.prefix,
            "SPEND_WAREHOUSE_DIR": str(tmp_path / "wh"),
        },
        python=python,
    )


def test_run_on_a_fresh_checkout_without_the_virtualenv_on_path(make_source, tmp_path):
    assert not shutil.which("dbt", path=PLAIN_PATH), "a dbt on the plain PATH hides the bug"
    checkout = fresh_checkout(tmp_path / "checkout")
    manifest = checkout / "dbt" / "target" / "manifest.json"
    source = make_source()
    insert_spend(source, [spend_row(f"r{i}", utcnow() - timedelta(hours=i)) for i in range(3)])

    result = _run_extract(source, tmp_path, checkout)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert manifest.is_file(), "the definitions were not loaded from the fresh checkout"
    assert "ok    raw/spend_logs status=present rows_read=3 rows_stored=3" in result.stdout


def test_run_without_dbt_on_a_fresh_checkout_is_one_sentence(
    make_source, tmp_path, python_without_dbt
):
    checkout = fresh_checkout(tmp_path / "checkout")
    result = _run_extract(make_source(), tmp_path, checkout, python=python_without_dbt)
    assert_one_sentence(result, EXIT_UNAVAILABLE, "dbt is not installed", "run 'make install'")
    assert not (checkout / "dbt" / "target" / "manifest.json").exists()


def test_docs_without_dbt_is_one_sentence(tmp_path, python_without_dbt):
    build_database(tmp_path / "wh" / "state" / "build.duckdb", rows=10)
    result = run_spendwh(
        ["docs", "--port", "0"],
        cwd=tmp_path,
        env={"SPEND_WAREHOUSE_DIR": str(tmp_path / "wh")},
        python=python_without_dbt,
        timeout=120,
    )
    assert_one_sentence(result, EXIT_UNAVAILABLE, "dbt is not installed", "run 'make install'")
