"""Run one SpendLogs extraction in a subprocess (crash tests kill it at a pause point).

Usage: ``python -m tests.ingest.extract_once <url> <prefix> <warehouse-dir> <lake-format>``
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.ingest.helpers import Warehouse


class _Source:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix


def main(argv: list[str]) -> int:
    url, prefix, root, lake_format = argv
    result = Warehouse(Path(root), lake_format).extract(_Source(url, prefix))
    print(result.rows_in_warehouse)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
