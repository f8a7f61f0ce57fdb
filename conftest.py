"""README.md and docs/*.md are tests: each shell block runs as written (tests/docs/).

docs/cli.md is generated from the commands' own help (docs/gen_cli.py) and
holds no blocks to run.
"""

from __future__ import annotations

import pytest
from sybil import Sybil
from sybil.integration.pytest import SybilItem

from tests.docs.evaluators import parsers, setup, teardown

pytest_collect_file = Sybil(
    parsers=parsers(),
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/cli.md"],
    setup=setup,
    teardown=teardown,
).pytest()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A document runs top to bottom on one worker (``make test`` uses ``--dist loadgroup``)."""
    for item in items:
        if isinstance(item, SybilItem):
            item.add_marker(pytest.mark.xdist_group(str(item.path)))
