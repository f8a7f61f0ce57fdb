"""Sybil parsers and evaluators that run a document's shell blocks as a reader would.

Why sybil (and not byexample): its examples are pytest items, so the blocks of
README.md and docs/*.md are collected, selected (``-k``), timed and reported by
the suite's own runner, with its timeout and its xdist workers; each document
gets one namespace, which here holds the document's :class:`Sandbox`; and an
evaluator is a Python callable, so "run this block with bash in the sandbox,
then compare what it printed" is a few lines of our own instead of a
configuration of someone else's shell session.

In a document:

- a `` ```sh `` block runs with bash (``set -eo pipefail``) in the sandbox;
- an `` ```output `` block right after it is what the block printed (output
  and errors, as the terminal shows them), compared as doctest compares (``...`` matches anything,
  whitespace is normalised);
- a `` ```toml `` block whose first line is a comment naming a file
  (``# hello.toml``, ``# vendor.toml: what it is``) is that file, as the
  reader saves it: written into the sandbox for the blocks after it; so is a
  `` ```python `` block whose first line names a ``.py`` file
  (``# plugin_host.py: ...``), which a later ``sh`` block runs;
- ``<!-- illustrative: why -->`` right before a block says it cannot run here
  (a cloud KMS, a real endpoint): the reader sees why, the test reports a skip.
"""

from __future__ import annotations

import doctest
import re
from typing import Any

import pytest
from sybil import Example, Region
from sybil.parsers.markdown import CodeBlockParser

from tests.docs.sandbox import BlockResult, Sandbox

SANDBOX = "sandbox"
_LAST = "last_block"
_SKIP_NEXT = "illustrative"
_FAILED = "failed_at"

_CHECKER = doctest.OutputChecker()
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def setup(namespace: dict[str, Any]) -> None:
    """A document starts in a fresh sandbox."""
    namespace[SANDBOX] = Sandbox.create()


def teardown(namespace: dict[str, Any]) -> None:
    """Every process the document started is stopped and its directory removed."""
    namespace[SANDBOX].close()


def _guard(example: Example) -> None:
    """Skip the example when an earlier block of the document failed or it is illustrative."""
    namespace = example.namespace
    if _FAILED in namespace:
        pytest.skip(f"an earlier block of this document failed (line {namespace[_FAILED]})")
    reason = namespace.pop(_SKIP_NEXT, None)
    if reason is not None:
        pytest.skip(f"illustrative: {reason}")


def run_shell(example: Example) -> None:
    """Run a ``sh`` block in the document's sandbox; a non-zero exit fails it."""
    _guard(example)
    namespace = example.namespace
    result: BlockResult = namespace[SANDBOX].run(example.parsed)
    namespace[_LAST] = result
    if result.returncode != 0:
        namespace[_FAILED] = example.line
        raise AssertionError(
            f"the block at line {example.line} exited {result.returncode}\n"
            f"--- output\n{result.output}")


def check_output(example: Example) -> None:
    """The block before printed what the document shows."""
    _guard(example)
    result: BlockResult | None = example.namespace.pop(_LAST, None)
    if result is None:
        raise AssertionError(f"the output at line {example.line} follows no block that ran")
    expected = example.namespace[SANDBOX].substitute(example.parsed)  # its ports, as the block's
    expected = expected if expected.endswith("\n") else expected + "\n"
    if not _CHECKER.check_output(expected, result.output, _FLAGS):
        example.namespace[_FAILED] = example.line
        raise AssertionError(f"the output at line {example.line} differs\n--- the document shows\n"
                             f"{expected}--- the block printed\n{result.output}")


class SavedFileParser:
    """A block whose first line names a file (``# hello.toml``): the reader saves it."""

    NAMED = re.compile(r"#\s*(?P<name>[\w./-]+\.(?P<suffix>\w+))\b")

    def __init__(self, language: str, suffix: str | None = None) -> None:
        self.language = language
        self.suffix = suffix or language
        self.blocks = CodeBlockParser(language=language, evaluator=self._evaluate)

    def __call__(self, document: Any) -> Any:
        for region in self.blocks(document):
            named = self.NAMED.match(str(region.parsed))
            if named and named.group("suffix") == self.suffix:
                yield region

    def _evaluate(self, example: Example) -> None:
        _guard(example)
        name = self.NAMED.match(str(example.parsed)).group("name")  # type: ignore[union-attr]
        example.namespace[SANDBOX].save(name, str(example.parsed))


class IllustrativeParser:
    """``<!-- illustrative: why -->``: the next block is shown, not run."""

    MARK = re.compile(r"^<!-- illustrative: (?P<reason>[^\n]+?) -->$", re.MULTILINE)

    def __call__(self, document: Any) -> Any:
        for match in self.MARK.finditer(document.text):
            yield Region(match.start(), match.end(), match.group("reason"), self._evaluate)

    @staticmethod
    def _evaluate(example: Example) -> None:
        example.namespace[_SKIP_NEXT] = example.parsed


def parsers() -> list[Any]:
    """What a document's examples are: shell blocks, their output, illustrative marks."""
    return [
        CodeBlockParser(language="sh", evaluator=run_shell),
        CodeBlockParser(language="output", evaluator=check_output),
        SavedFileParser("toml"),
        SavedFileParser("python", "py"),
        IllustrativeParser(),
    ]
