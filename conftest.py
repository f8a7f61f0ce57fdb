"""README.md and docs/*.md are tests: each shell block runs as written (tests/docs/).

docs/cli.md is generated from the commands' own help (docs/gen_cli.py) and
holds no blocks to run. A document's blocks run top to bottom on one xdist
worker: pyproject.toml's ``--dist loadfile`` keeps each file's items together.
"""

from __future__ import annotations

from sybil import Sybil

from tests.docs.evaluators import parsers, setup, teardown

pytest_collect_file = Sybil(
    parsers=parsers(),
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/cli.md"],
    setup=setup,
    teardown=teardown,
).pytest()
