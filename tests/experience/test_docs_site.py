"""The dbt docs site: ``spendwh docs`` generates it against a built warehouse and serves it;
headless Chromium renders it; a screenshot is kept in ``test-artifacts/``."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dagster_project.settings import DBT_PROJECT_DIR, REPO_ROOT
from tests.experience.processes import URL_PATTERN, start_spendwh, wait_until_answers

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
)
EXPOSURES = {
    "spend_overview_notebook",
    "budget_burn_down_notebook",
    "error_analysis_notebook",
    "budget_alerts",
}
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"  # git-ignored; CI keeps it as an artifact
SCREENSHOT_MODEL = "fct_spend_daily"
SCREENSHOT_SIZE = (1400, 900)


@dataclass(frozen=True)
class DocsSite:
    """The served site: its URL and the manifest it serves."""

    url: str
    manifest: dict


def chromium() -> str:
    """The Chromium binary; a missing browser is a failure, never a skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed, so the docs site cannot be rendered: install Debian's "
            "package ('apt-get install chromium') and rerun"
        )
    return path


def render(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with ``action`` (--dump-dom or --screenshot=...)."""
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def docs_site(built_warehouse, tmp_path_factory) -> Iterator[DocsSite]:
    """``spendwh docs --port 0`` on the built warehouse, until the module's tests are done."""
    command = start_spendwh(
        "docs",
        "--port",
        "0",
        env=built_warehouse.environment(),
        cwd=tmp_path_factory.mktemp("docs-cwd"),
    )
    try:
        url = command.wait_for(URL_PATTERN, timeout=300).group(0)
        manifest = json.loads(wait_until_answers(f"{url}/manifest.json", timeout=30))
        assert b"<html" in wait_until_answers(f"{url}/", timeout=30).lower()
        yield DocsSite(url, manifest)
    finally:
        command.stop()
    assert command.process.returncode == 0, command.transcript()


def models(manifest: dict) -> dict[str, dict]:
    """The project's models by unique id."""
    return {
        uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"
    }


def test_docs_are_generated_against_the_build_database(docs_site, built_warehouse):
    catalog = json.loads(wait_until_answers(f"{docs_site.url}/catalog.json", timeout=30))
    assert "model.spend_warehouse.fct_spend_daily" in catalog["nodes"]
    columns = catalog["nodes"]["model.spend_warehouse.fct_spend_daily"]["columns"]
    assert {"spend_usd", "spend_date", "key_hash"} <= set(columns)
    assert (built_warehouse.warehouse_dir / "state" / "dbt-docs" / "index.html").is_file()


def test_site_renders_every_model_and_exposure(docs_site, tmp_path):
    dom = render(docs_site.url + "/", tmp_path / "profile", "--dump-dom").stdout
    rendered = set(re.findall(r'data-nav-unique-id="([\w.]+)"', dom))
    expected = set(models(docs_site.manifest))
    assert expected == {
        f"model.spend_warehouse.{path.stem}" for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")
    }
    assert expected <= rendered, f"not rendered: {sorted(expected - rendered)}"
    assert {f"exposure.spend_warehouse.{name}" for name in EXPOSURES} <= rendered


def test_model_page_shows_description_and_columns_and_keeps_a_screenshot(docs_site, tmp_path):
    uid = f"model.spend_warehouse.{SCREENSHOT_MODEL}"
    page = f"{docs_site.url}/#!/model/{uid}"
    node = docs_site.manifest["nodes"][uid]
    dom = render(page, tmp_path / "profile", "--dump-dom").stdout
    assert node["description"][:60] in dom
    for column in node["columns"]:
        assert f">{column}<" in dom, f"column {column} not on the page"

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    screenshot = ARTIFACTS_DIR / f"dbt-docs-{SCREENSHOT_MODEL}.png"
    screenshot.unlink(missing_ok=True)
    width, height = SCREENSHOT_SIZE
    render(
        page, tmp_path / "profile", f"--screenshot={screenshot}", f"--window-size={width},{height}"
    )
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == SCREENSHOT_SIZE
    assert len(data) > 30_000, "the screenshot looks blank"


def test_exposures_show_who_reads_which_mart(docs_site, tmp_path):
    exposures = docs_site.manifest["exposures"]
    assert {e["name"] for e in exposures.values()} == EXPOSURES
    for exposure in exposures.values():
        assert exposure["depends_on"]["nodes"], f"{exposure['name']} depends on nothing"
        assert all(".fct_" in n or ".dim_" in n for n in exposure["depends_on"]["nodes"])
    alerts = exposures["exposure.spend_warehouse.budget_alerts"]
    dom = render(
        f"{docs_site.url}/#!/exposure/exposure.spend_warehouse.budget_alerts",
        tmp_path / "profile",
        "--dump-dom",
    ).stdout
    assert alerts["label"] in dom
    for uid in alerts["depends_on"]["nodes"]:
        assert uid.rsplit(".", 1)[1] in dom
