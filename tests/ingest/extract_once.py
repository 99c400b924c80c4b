"""Run one SpendLogs extraction in a subprocess (crash tests kill it at a pause point).

Usage: ``python -m tests.ingest.extract_once <url> <prefix> <warehouse-dir> <lake-format>``;
``$SPENDWH_TEST_OBJECT_STORE`` (the fields of :class:`~dagster_project.settings.ObjectStore` as
JSON) puts the Iceberg tables on object storage.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dagster_project.settings import ObjectStore
from tests.ingest.helpers import Warehouse

OBJECT_STORE_ENV = "SPENDWH_TEST_OBJECT_STORE"


class _Source:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix


def main(argv: list[str]) -> int:
    url, prefix, root, lake_format = argv
    store_json = os.environ.get(OBJECT_STORE_ENV)
    store = ObjectStore(**json.loads(store_json)) if store_json else None
    warehouse = Warehouse(Path(root), lake_format, object_store=store)
    result = warehouse.extract(_Source(url, prefix))
    print(result.rows_in_warehouse)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
