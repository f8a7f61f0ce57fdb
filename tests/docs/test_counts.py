"""The README says how many documented blocks run; the documents say so too."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md")
                                        if p.name != "cli.md")]


def test_the_readme_counts_the_blocks_that_run():
    blocks = sum(len(re.findall(r"^```sh$", p.read_text(), re.M)) for p in documents())
    shown = sum(len(re.findall(r"^<!-- illustrative: .+ -->$", p.read_text(), re.M))
                for p in documents())
    said = re.search(r"With `docs/` there are (\d+), and (\d+) run", (ROOT / "README.md")
                     .read_text().replace("\n", " "))
    assert said is not None
    assert (int(said.group(1)), int(said.group(2))) == (blocks, blocks - shown)


def test_every_illustrative_block_says_so_where_the_reader_sees_it():
    """The HTML comment is invisible once rendered: its section must say so in words."""
    for page in documents():
        text = page.read_text()
        for mark in re.finditer(r"^<!-- illustrative: .+ -->$", text, re.M):
            section = re.split(r"^#+ .*$", text[:mark.start()], flags=re.M)[-1]
            after = text[mark.end():].split("```", 1)[0]
            words = re.sub(r"<!--.*?-->", "", section + after).lower()
            assert re.search(r"illustrative|not run|does not run", words), \
                f"{page.name}: {mark.group(0)} is explained nowhere the reader sees"
