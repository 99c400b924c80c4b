"""How Dagster sees the dbt project: asset keys and groups of its nodes, and what the manifest
says of them (the marts, the tables dbt materializes).

Sources keep the keys of the extraction's assets (``raw/<table>``, set with
``meta.dagster.asset_key`` in the sources YAML), so the UI shows one lineage graph; models are
grouped by their layer folder (staging, intermediate, marts).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

MARTS_GROUP = "marts"


class SpendWarehouseTranslator(DagsterDbtTranslator):
    """Groups models by layer (staging, intermediate, marts); sources keep ``raw/<table>``."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return layer_group(dbt_resource_props)


def layer_group(dbt_resource_props: Mapping[str, Any]) -> str | None:
    """The asset group of a dbt node: the first folder under models/ (None for sources)."""
    if dbt_resource_props.get("resource_type") == "source":
        return None
    fqn = dbt_resource_props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 else "dbt"


def mart_keys(manifest_path, translator: DagsterDbtTranslator) -> list[dg.AssetKey]:
    """The asset keys of every model in the marts layer (what analysts read)."""
    return sorted(
        (
            translator.get_asset_key(node)
            for node in manifest_nodes(manifest_path)
            if node["resource_type"] == "model" and layer_group(node) == MARTS_GROUP
        ),
        key=lambda key: key.to_user_string(),
    )


@functools.lru_cache(maxsize=4)
def _parsed_nodes(path: str, _mtime_ns: int, _size: int) -> tuple[dict[str, Any], ...]:
    """The nodes of the manifest at ``path`` as it was at that modification time and size."""
    return tuple(json.loads(Path(path).read_text())["nodes"].values())


def manifest_nodes(manifest_path) -> tuple[dict[str, Any], ...]:
    """The nodes of the dbt manifest, parsed once per version of the file (the build sensor
    asks for them every tick)."""
    stat = Path(manifest_path).stat()
    return _parsed_nodes(str(manifest_path), stat.st_mtime_ns, stat.st_size)


def table_relations(manifest_path, translator: DagsterDbtTranslator) -> dict[dg.AssetKey, str]:
    """Asset key -> relation name of every model dbt materializes as a table (not views)."""
    return {
        translator.get_asset_key(node): node["relation_name"]
        for node in manifest_nodes(manifest_path)
        if node["resource_type"] == "model"
        and node["config"].get("materialized") in {"table", "incremental"}
        and node.get("relation_name")
    }


def dbt_translator() -> SpendWarehouseTranslator:
    """The translator of the project's dbt assets (dbt tests as asset checks)."""
    return SpendWarehouseTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
