"""The xdist groups (tests/xdist_groups.py) hold every test that shares costly set-up."""

from __future__ import annotations

import pytest
from sybil.integration.pytest import SybilItem

from tests.xdist_groups import group_of, scope_of

#: Session fixtures too costly to set up on both workers.
COSTLY_SESSION = {"object_store": "object-store"}


def needed_group(item: pytest.Item) -> str | None:
    """The group ``item`` must be in, from what it really uses; None: any worker."""
    path = item.nodeid.split("::", 1)[0]
    if isinstance(item, SybilItem):
        return f"doc:{path}"
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in info.names_closure:
        if name in COSTLY_SESSION:
            return COSTLY_SESSION[name]
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name, ())
        if defs and defs[-1].scope == "module":
            return f"module:{path}"
    return None


def in_group(actual: str | None, needed: str) -> bool:
    """An object-store test may be in a group of its own ("object-store:NAME")."""
    return actual == needed or (needed == "object-store" and
                                (actual or "").startswith("object-store:"))


def test_every_test_sharing_costly_set_up_is_grouped(request):
    wrong = [(item.nodeid, needed, group_of(item.nodeid))
             for item in request.session.items
             if (needed := needed_group(item)) is not None and
             not in_group(group_of(item.nodeid), needed)]
    assert not wrong, f"add these to tests/xdist_groups.py: {wrong}"


def test_groups_are_scopes_and_the_rest_run_alone():
    assert scope_of("docs/keys.md::line:37,column:1") == "doc:docs/keys.md"
    assert scope_of("README.md::line:9,column:1") == "doc:README.md"
    assert scope_of("tests/test_cli_inputs.py::test_x[a]") == "module:tests/test_cli_inputs.py"
    assert scope_of("tests/s3/test_bucket.py::test_y") == "object-store"
    assert scope_of("tests/test_nginx.py::test_nginx_in_front_of_a_bucket") == "object-store"
    assert scope_of("tests/s3/test_two_publishers.py::test_w") == "object-store:publishers"
    assert scope_of("tests/test_nginx.py::test_z") == "tests/test_nginx.py::test_z"
    assert scope_of("tests/a.py::test_b[x@y]") == "tests/a.py::test_b[x@y]"
    assert scope_of("tests/a.py::test_b@named") == "named"  # an xdist_group mark
