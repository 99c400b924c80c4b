"""The dbt project's floor plan, checked on its manifest: the rules of dbt-project-evaluator that
apply here (the package itself is not installed), one test per rule, each listing its offenders.

Layers are the first folder under ``models/``: ``staging/<source>/`` (``stg_<source>__*``, views
over one source), ``intermediate/<domain>/`` (``int_*``) and ``marts/<domain>/`` (``fct_*`` and
``dim_*``). A model may only read models of its own or an earlier layer, never a mart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import duckdb
import pytest

from dagster_project.settings import DBT_PROJECT_DIR
from tests.models.dbt_runner import duckdb_env, run_dbt

pytestmark = pytest.mark.integration

PACKAGE = "spend_warehouse"
LAYERS = ("staging", "intermediate", "marts")
MART_PREFIXES = ("fct_", "dim_")
# Tests that make a column set a primary key (the evaluator's is_primary_key_tested).
KEY_TESTS = {"primary_key", "unique_combination_of_columns"}

# Models without a primary-key test, each with the reason it has no key. Empty: every model has
# one. A model added here must say why its grain has no key (e.g. a log without identity).
MODELS_WITHOUT_A_KEY: dict[str, str] = {
    "int_entity_requests": (
        "unique by construction (int_spend_logs_attributed's tested primary key crossed with the"
        " seven entity kinds, the project kind only for budgeted projects, plus the distinct"
        " budgeted tags of each request); a key test on this"
        " view groups about five rows per request, 1 GB and 6 s at 1 M requests, the largest"
        " memory of a pipeline run"
    ),
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict[str, Any]:
    """The manifest of ``dbt parse`` (no database is read)."""
    work = tmp_path_factory.mktemp("dbt-parse")
    run_dbt(["parse"], work, duckdb_env(work / "build.duckdb"))
    return json.loads((work / "target" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def models(manifest) -> dict[str, dict[str, Any]]:
    """The project's models by unique id."""
    return {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["package_name"] == PACKAGE
    }


@pytest.fixture(scope="module")
def sources(manifest) -> dict[str, dict[str, Any]]:
    """The project's source tables by unique id."""
    return {
        uid: node for uid, node in manifest["sources"].items() if node["package_name"] == PACKAGE
    }


def folder(node: dict[str, Any]) -> PurePosixPath:
    """The node's folder relative to the project (``models/<layer>/<subfolder>``)."""
    return PurePosixPath(node["original_file_path"]).parent


def layer(node: dict[str, Any]) -> str | None:
    """The first folder under ``models/`` (None for a model directly in ``models/``)."""
    parts = folder(node).parts
    return parts[1] if len(parts) > 1 else None


def subfolder(node: dict[str, Any]) -> str | None:
    """The folder under the layer: the source of staging, the domain elsewhere."""
    parts = folder(node).parts
    return parts[2] if len(parts) > 2 else None


def parent_models(node: dict[str, Any], models: dict[str, dict[str, Any]]) -> list[dict]:
    return [models[uid] for uid in node["depends_on"]["nodes"] if uid in models]


def parent_sources(node: dict[str, Any], sources: dict[str, dict[str, Any]]) -> list[dict]:
    return [sources[uid] for uid in node["depends_on"]["nodes"] if uid in sources]


def offenders(lines: Iterable[str]) -> str:
    return "\n  " + "\n  ".join(sorted(lines))


# --- structure ---------------------------------------------------------------------------------


def test_every_model_is_in_a_layer_subfolder(models):
    """Each model sits in ``models/<layer>/<subfolder>/`` (no root or unknown-layer model)."""
    misplaced = [
        f"{node['name']}: {node['original_file_path']}"
        for node in models.values()
        if layer(node) not in LAYERS or subfolder(node) is None or len(folder(node).parts) != 3
    ]
    assert not misplaced, f"models outside models/<{'|'.join(LAYERS)}>/<folder>/:" + offenders(
        misplaced
    )


def test_staging_models_are_named_after_their_source_folder(models):
    misnamed = [
        f"{node['name']} in staging/{subfolder(node)}/ (want stg_{subfolder(node)}__*)"
        for node in models.values()
        if layer(node) == "staging" and not node["name"].startswith(f"stg_{subfolder(node)}__")
    ]
    elsewhere = [
        f"{node['name']} in {folder(node)}"
        for node in models.values()
        if node["name"].startswith("stg_") and layer(node) != "staging"
    ]
    assert not misnamed + elsewhere, "staging models misnamed or misplaced:" + offenders(
        misnamed + elsewhere
    )


def test_intermediate_models_are_int_models_in_a_domain_folder(models):
    wrong = [
        f"{node['name']} in {folder(node)}"
        for node in models.values()
        if (layer(node) == "intermediate") != node["name"].startswith("int_")
    ]
    assert not wrong, "int_* models must be exactly those in intermediate/<domain>/:" + offenders(
        wrong
    )


def test_marts_are_facts_or_dimensions_in_a_domain_folder(models):
    wrong = [
        f"{node['name']} in {folder(node)}"
        for node in models.values()
        if (layer(node) == "marts") != node["name"].startswith(MART_PREFIXES)
    ]
    assert not wrong, "fct_*/dim_* models must be exactly those in marts/<domain>/:" + offenders(
        wrong
    )


def test_each_model_folder_has_one_yaml_for_its_models(models):
    """All models of a folder are documented in one YAML file, in that folder, named ``_*``."""
    yaml_files: dict[PurePosixPath, set[str]] = defaultdict(set)
    wrong: list[str] = []
    for node in models.values():
        patch = node.get("patch_path")
        if not patch:
            wrong.append(f"{node['name']}: no YAML entry")
            continue
        path = PurePosixPath(patch.split("://", 1)[-1])
        yaml_files[folder(node)].add(str(path))
        if path.parent != folder(node) or not path.name.startswith("_"):
            wrong.append(f"{node['name']}: documented in {path}, not in {folder(node)}/_*.yml")
    for directory, files in yaml_files.items():
        if len(files) != 1:
            wrong.append(f"{directory}: models documented in {len(files)} files {sorted(files)}")
    for directory in yaml_files:
        on_disk = {
            str(PurePosixPath(directory) / path.name)
            for path in (DBT_PROJECT_DIR / directory).glob("*.y*ml")
            if not path.name.endswith("__sources.yml")
        }
        extra = on_disk - yaml_files[directory]
        if extra:
            wrong.append(f"{directory}: YAML files besides the models' one: {sorted(extra)}")
    assert not wrong, "one models YAML per folder:" + offenders(wrong)


def test_sources_are_declared_in_their_staging_folder(sources):
    """Source ``<s>`` is declared in ``models/staging/<s>/_<s>__sources.yml``."""
    wrong = sorted(
        {
            f"source {node['source_name']} in {node['original_file_path']}"
            for node in sources.values()
            if node["original_file_path"]
            != f"models/staging/{node['source_name']}/_{node['source_name']}__sources.yml"
        }
    )
    assert sources, "the project declares no source"
    assert not wrong, "sources must live in staging/<source>/_<source>__sources.yml:" + offenders(
        wrong
    )


# --- modeling ----------------------------------------------------------------------------------


def test_staging_models_select_only_from_their_own_source(models, sources):
    wrong = []
    for node in models.values():
        if layer(node) != "staging":
            continue
        refs = [parent["name"] for parent in parent_models(node, models)]
        if refs:
            wrong.append(f"{node['name']} refs models {refs}")
        read = parent_sources(node, sources)
        if not read:
            wrong.append(f"{node['name']} selects from no source")
        foreign = sorted({s["source_name"] for s in read} - {subfolder(node)})
        if foreign:
            wrong.append(f"{node['name']} in staging/{subfolder(node)}/ reads sources {foreign}")
    assert not wrong, "staging models read only the source of their folder:" + offenders(wrong)


def test_only_staging_models_select_from_sources(models, sources):
    wrong = [
        f"{node['name']} ({layer(node)}) selects from {source['source_name']}.{source['name']}"
        for node in models.values()
        if layer(node) != "staging"
        for source in parent_sources(node, sources)
    ]
    assert not wrong, "models outside staging select from sources directly:" + offenders(wrong)


def test_marts_do_not_ref_marts(models):
    wrong = [
        f"{node['name']} refs {parent['name']}"
        for node in models.values()
        if layer(node) == "marts"
        for parent in parent_models(node, models)
        if layer(parent) == "marts"
    ]
    assert not wrong, "marts built on marts (read the intermediate models instead):" + offenders(
        wrong
    )


def test_no_model_refs_a_later_layer(models):
    """staging <- intermediate <- marts: a model reads only its own or earlier layers."""
    order = {name: position for position, name in enumerate(LAYERS)}
    wrong = [
        f"{node['name']} ({layer(node)}) refs {parent['name']} ({layer(parent)})"
        for node in models.values()
        for parent in parent_models(node, models)
        if order.get(layer(parent), len(LAYERS)) > order.get(layer(node), -1)
    ]
    assert not wrong, "models reading a later layer:" + offenders(wrong)


def test_no_root_models(models):
    """Every model outside staging has a parent model (staging models have their source)."""
    wrong = [
        node["name"]
        for node in models.values()
        if layer(node) != "staging" and not parent_models(node, models)
    ]
    assert not wrong, "models without a parent model:" + offenders(wrong)


def test_every_source_table_is_used(models, sources):
    used = {uid for node in models.values() for uid in node["depends_on"]["nodes"]}
    unused = [
        f"{node['source_name']}.{node['name']}" for uid, node in sources.items() if uid not in used
    ]
    assert not unused, "source tables no model selects from:" + offenders(unused)


# --- testing and documentation -----------------------------------------------------------------


def test_every_model_and_source_is_described(models, sources):
    missing = [
        f"model {node['name']}" for node in models.values() if not node["description"].strip()
    ]
    missing += [
        f"source {node['source_name']}.{node['name']}"
        for node in sources.values()
        if not node["description"].strip() or not node["source_description"].strip()
    ]
    assert not missing, "undescribed:" + offenders(missing)


def test_every_documented_column_is_described(models):
    missing = [
        f"{node['name']}.{column['name']}"
        for node in models.values()
        for column in node["columns"].values()
        if not (column.get("description") or "").strip()
    ]
    assert not missing, "columns without a description:" + offenders(missing)


def test_every_built_column_is_documented(models, built_duckdb):
    """The YAML lists exactly the columns each built relation has (no more, no fewer)."""
    with duckdb.connect(str(built_duckdb.path), read_only=True) as conn:
        built: dict[tuple[str, str], list[str]] = defaultdict(list)
        for schema, name, column in conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " order by table_schema, table_name, ordinal_position"
        ).fetchall():
            built[(schema, name)].append(column.lower())
    wrong = []
    for node in models.values():
        relation = (node["schema"], node["alias"])
        if relation not in built:
            wrong.append(f"{node['name']}: not built")
            continue
        documented = [name.lower() for name in node["columns"]]
        undocumented = [c for c in built[relation] if c not in documented]
        stale = [c for c in documented if c not in built[relation]]
        if undocumented:
            wrong.append(f"{node['name']}: undocumented columns {undocumented}")
        if stale:
            wrong.append(f"{node['name']}: documented columns it does not have {stale}")
    assert not wrong, "models whose YAML columns differ from the built relation:" + offenders(wrong)


def key_tested_models(manifest, models) -> set[str]:
    """Models with a primary-key test: primary_key, unique_combination_of_columns, or unique
    and not_null (a test or a contract constraint) on one column."""
    unique: dict[str, set[str]] = defaultdict(set)
    not_null: dict[str, set[str]] = defaultdict(set)
    keyed: set[str] = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or not node.get("attached_node"):
            continue
        name = (node.get("test_metadata") or {}).get("name")
        model = node["attached_node"]
        if name in KEY_TESTS:
            keyed.add(model)
        elif name == "unique":
            unique[model].add(node["column_name"])
        elif name == "not_null":
            not_null[model].add(node["column_name"])
    for uid, node in models.items():
        for column in node["columns"].values():
            if any(c["type"] == "not_null" for c in column.get("constraints", [])):
                not_null[uid].add(column["name"])
        if unique[uid] & not_null[uid]:
            keyed.add(uid)
    return {models[uid]["name"] for uid in keyed if uid in models}


def test_every_model_has_a_primary_key_test(manifest, models):
    keyed = key_tested_models(manifest, models)
    unkeyed = sorted({node["name"] for node in models.values()} - keyed - set(MODELS_WITHOUT_A_KEY))
    assert not unkeyed, (
        "models without a primary_key, unique_combination_of_columns or unique + not_null test"
        " (add one, or list the model in MODELS_WITHOUT_A_KEY with the reason):"
        + offenders(unkeyed)
    )
    stale = sorted(set(MODELS_WITHOUT_A_KEY) & keyed)
    assert not stale, "MODELS_WITHOUT_A_KEY lists models that have a key test:" + offenders(stale)
