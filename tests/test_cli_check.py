"""`spendwh check` validates the source at start-up with one clear sentence, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _check(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster_project.cli", "check"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_accepts_a_proxy_database(source, tmp_path):
    result = _check({"DATABASE_URL": source.url, "PROXY_TABLE_PREFIX": source.prefix}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SpendLogs present" in result.stdout


def test_wrong_prefix_names_the_prefix_that_exists(make_source, tmp_path):
    src = make_source(prefix="LiteLLM_")
    result = _check({"DATABASE_URL": src.url, "PROXY_TABLE_PREFIX": "Dheera AI_"}, tmp_path)
    assert result.returncode == 2
    assert "set PROXY_TABLE_PREFIX to that" in result.stderr
    assert "'LiteLLM_'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_sentence(tmp_path):
    result = _check({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/proxy"}, tmp_path)
    assert result.returncode == 2
    assert "Cannot connect to DATABASE_URL" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_url(tmp_path):
    result = _check({"DATABASE_URL": "not a url"}, tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL must start with postgresql://" in result.stderr
