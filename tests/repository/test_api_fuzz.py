"""schemathesis over the served OpenAPI description, against the real server under gunicorn.

Every generated request (authenticated, so that releases reach validation)
must get a documented status with a JSON error, never a 5xx, and the served
tree must not change: no generated upload carries a supply chain that
verifies. ``make fuzz`` runs it longer (``CUSTODY_FUZZ_API_EXAMPLES`` cases
per operation, with no time limit).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from custody.repository.openapi import openapi
from custody.repository.server import create_app
from custody.repository.storage import RepoPaths
from custody.repository.tokens import create_token
from tests.helpers import BIN, running_server

EXAMPLES = os.environ.get("CUSTODY_FUZZ_API_EXAMPLES", "40")
#: The default run stays within the suite's time; a long fuzz run has no bound.
TIMEOUT = None if "CUSTODY_FUZZ_API_EXAMPLES" in os.environ else 240


def tree(path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted((path / "public").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(hello_repo):
    _, token = create_token(RepoPaths(hello_repo.repo_dir), "fuzz", "operator")  # every endpoint
    hello_repo.publish("1.0.0")
    before = tree(hello_repo.repo_dir)
    with running_server(hello_repo.repo_dir, workers=2) as url:
        result = subprocess.run(
            [str(BIN / "st"), "run", f"{url}/api/v1/openapi.json", "--checks",
             "not_a_server_error,status_code_conformance,content_type_conformance,"
             "response_schema_conformance", "-H", f"Authorization: Bearer {token}",
             "-n", EXAMPLES, "--seed", "17", "--generation-allow-x00", "true"],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
            cwd=hello_repo.work)  # schemathesis keeps its cache in the working directory
    assert result.returncode == 0, result.stdout[-4000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None and counts.group(1) == counts.group(2), result.stdout[-2000:]
    assert tree(hello_repo.repo_dir) == before


def test_the_description_names_every_route(hello_repo):
    app = create_app(hello_repo.repo_dir)
    routes = {rule.rule.replace("<path:name>", "{name}").replace("<path:path>", "{path}")
              for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.rule.startswith("/ui")}  # HTML pages
    described = set(openapi(1)["paths"])
    assert {r.replace("{name}", "{path}") for r in routes if r.startswith("/targets")} == \
        {"/targets/{path}"}
    assert {r for r in routes if not r.startswith("/targets")} == \
        {p for p in described if not p.startswith("/targets")}
    served_description = app.test_client().get("/api/v1/openapi.json")
    assert served_description.status_code == 200
    assert served_description.json["openapi"] == "3.1.0"
