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
    """Each test named in the threat model exists in tests/attacks/."""
    import re

    names = set(re.findall(r"`(test_[a-z0-9_]+)`", (ROOT / "docs/threat-model.md").read_text()))
    sources = "".join(p.read_text() for p in (ROOT / "tests/attacks").glob("test_*.py"))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)", sources, re.MULTILINE))
    assert len(names) == 27  # the 26 rows of ATTACKS.md and one found beyond them
    assert names <= defined, names - defined
