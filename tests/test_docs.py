"""The documentation that is generated stays in step with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "docs/gen_cli.py"), "--check"],
                            capture_output=True, text=True, check=False, env={"COLUMNS": "37"})
    assert result.returncode == 0, "docs/cli.md is stale: run python docs/gen_cli.py"


def test_every_attack_has_a_test():
    """Each test named in the threat model exists (tests/attacks/, or the file the row names)."""
    import re

    names = set(re.findall(r"`(test_[a-z0-9_]+)`", (ROOT / "docs/threat-model.md").read_text()))
    sources = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)", sources, re.MULTILINE))
    assert len(names) >= 29  # the 26 rows of ATTACKS.md, one beyond them, hostile metadata
    assert names <= defined, names - defined


def test_readme_shows_the_exit_code_table():
    from custody.client.errors import exit_code_table

    assert exit_code_table() in (ROOT / "README.md").read_text()


def test_no_link_leaves_the_repository():
    """Relative Markdown links in README and docs/ resolve to files of this repository."""
    import re

    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{page.name} links outside: {target}"
            assert resolved.exists(), f"{page.name} links to a missing {target}"


def test_bench_tables_are_spliced_between_their_markers():
    from bench.readme import splice

    readme = ("intro\n<!-- bench:verify -->\nold table\n<!-- /bench:verify -->\nmiddle\n"
              "<!-- bench:fleet -->\nold\n<!-- /bench:fleet -->\nend\n")
    text, updated, missing = splice(readme, {"verify": "| new |\n|---|\n"})
    assert text == ("intro\n<!-- bench:verify -->\n| new |\n|---|\n<!-- /bench:verify -->\n"
                    "middle\n<!-- bench:fleet -->\nold\n<!-- /bench:fleet -->\nend\n")
    assert (updated, missing) == (["verify"], ["fleet"])
