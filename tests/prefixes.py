"""The two table prefixes every source test runs with: the Dheera AI Proxy's and upstream's."""

import pytest

from dagster_project.settings import DEFAULT_TABLE_PREFIX, UPSTREAM_TABLE_PREFIX

BOTH_PREFIXES = [
    pytest.param(DEFAULT_TABLE_PREFIX, id="dheera"),
    pytest.param(UPSTREAM_TABLE_PREFIX, id="litellm"),
]
