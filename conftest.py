"""README.md and docs/*.md are tests: each shell block runs as written (tests/docs/).

docs/cli.md is generated from the commands' own help (docs/gen_cli.py) and
holds no blocks to run. A document's blocks run top to bottom on one xdist
worker: the scheduler of tests/xdist_groups.py keeps each document's items
together, and spreads the other tests one by one over the free workers.
"""

from __future__ import annotations

import pytest
from sybil import Sybil

from tests.docs.evaluators import parsers, setup, teardown

pytest_collect_file = Sybil(
    parsers=parsers(),
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/cli.md"],
    setup=setup,
    teardown=teardown,
).pytest()


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # xdist's hook; before its own
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (pyproject.toml): the groups of tests/xdist_groups.py."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.xdist_groups import make_scheduler

    return make_scheduler(config, log)
