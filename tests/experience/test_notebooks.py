"""The analyst notebooks: stripped in git, and each one runs without error on a real warehouse."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from dagster_project.settings import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {"spend_overview.ipynb", "budget_burn_down.ipynb", "error_analysis.ipynb"}
CELL_TIMEOUT_S = 300


def test_the_three_notebooks_exist():
    assert {path.name for path in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    """No outputs or execution counts in git (they would leak data and churn diffs)."""
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name} cell {index} has outputs"
            assert cell["execution_count"] is None, f"{path.name} cell {index} was executed"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_only_marts(path):
    """Analysts read marts: no raw, staging or intermediate relation, and never read-write."""
    source = "\n".join(
        "".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
    ).lower()
    non_marts = re.findall(r"\b(?:raw\.\w+|staging\.\w+|intermediate\.\w+|stg_\w+|int_\w+)", source)
    assert not non_marts, f"{path.name} reads {non_marts}, not marts"
    assert "open_warehouse(" in source
    assert "duckdb.connect(" not in source  # only the read-only helper opens the file


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_a_built_warehouse(path, built_warehouse, monkeypatch):
    """Execute every cell with the venv's python3 kernel; any error fails the test."""
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(built_warehouse.warehouse_dir))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},  # Jupyter's working directory
    )
    client.execute()  # raises CellExecutionError with the failing cell and traceback

    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"{path.name} drew {len(images)} charts"
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(built_warehouse.warehouse_dir / "warehouse.duckdb") in printed
