"""Which tests must share an xdist worker; every other test goes to any free worker.

``make test`` runs ``pytest -n 2 --dist loadgroup`` (pyproject.toml). xdist's
own ``xdist_group`` mark cannot serve here: it renames node ids, which pytest 9.2
no longer lets a plugin do, so the marks are silently ignored. The root
conftest.py instead gives xdist a scheduler whose scope of a test is
:func:`group_of` its node id. A group runs top to bottom on one worker:

- a document's blocks (README.md, docs/*.md): they share the document's
  sandbox (tests/docs/), in order;
- the tests of :data:`MODULE_FIXTURES`, whose module-scoped fixtures (a
  PostgreSQL cluster, a venv, a PKI) one worker then sets up once;
- the tests using the object store (tests/s3/), started once per worker that
  needs it; the longest of them in a group of their own, which the other
  worker can take.

tests/test_xdist_groups.py checks these tables against the fixtures each
collected test really uses, so a new module fixture or object-store test
is not silently set up on both workers.
"""

from __future__ import annotations

#: Tests (node-id prefixes) that use the session's object store, a Swift server.
OBJECT_STORE = ("tests/s3/test_bucket.py::",
                "tests/test_nginx.py::test_nginx_in_front_of_a_bucket")

#: Object-store tests long enough to be worth a second Swift (about 12 s to start) on the
#: other worker, in a group of their own ("object-store:NAME").
OBJECT_STORE_APART = {"tests/s3/test_two_publishers.py::": "publishers"}

#: Modules with a module-scoped fixture: their tests stay on one worker.
MODULE_FIXTURES = frozenset({
    "tests/client/test_delta.py",
    "tests/client/test_enterprise_network.py",
    "tests/intoto/test_keyless.py",
    "tests/keys/test_offline.py",
    "tests/repository/test_database.py",
    "tests/test_cli_inputs.py",
    "tests/test_lean_client.py",
})


def group_of(nodeid: str) -> str | None:
    """The group of the test ``nodeid``, or None when any worker may run it alone."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".md"):
        return f"doc:{path}"
    if nodeid.startswith(OBJECT_STORE):
        return "object-store"
    for prefix, name in OBJECT_STORE_APART.items():
        if nodeid.startswith(prefix):
            return f"object-store:{name}"
    if path in MODULE_FIXTURES:
        return f"module:{path}"
    return None


def scope_of(nodeid: str) -> str:
    """The scheduling scope of ``nodeid``: its group, or itself (alone, any worker)."""
    from xdist.scheduler import LoadGroupScheduling

    scope = LoadGroupScheduling._split_scope(None, nodeid)  # type: ignore[arg-type]
    if scope != nodeid:
        return scope  # an xdist_group mark, on a pytest that lets xdist rename node ids
    return group_of(nodeid) or nodeid


def make_scheduler(config, log):
    """``--dist loadgroup``, with the groups of :func:`group_of`."""
    from xdist.scheduler import LoadGroupScheduling

    class Grouped(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return Grouped(config, log)
