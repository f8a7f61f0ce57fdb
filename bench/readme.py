"""Copy the tables `make bench` just wrote (bench/results/*.md) into the README.

Each table sits in the README between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``, NAME being the result file's stem; text around the
markers (what the numbers mean) is the README's own. A result that was not
produced leaves its section as it was; a marker without a result is named.

    python bench/readme.py [README.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SECTION = re.compile(
    r"(<!-- bench:(?P<name>[a-z_-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.DOTALL)


def splice(readme: str, results: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """The README with each marked section replaced; (text, updated, missing)."""
    updated: list[str] = []
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in results:
            missing.append(name)
            return match.group(0)
        updated.append(name)
        return f"{match.group(1)}{results[name].strip()}\n{match.group(4)}"

    return SECTION.sub(replace, readme), updated, missing


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "README.md"
    results = {p.stem: p.read_text() for p in sorted(RESULTS.glob("*.md"))}
    text, updated, missing = splice(path.read_text(), results)
    path.write_text(text)
    print(f"{path.name}: updated {', '.join(updated) or 'nothing'}"
          + (f"; no result for {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
