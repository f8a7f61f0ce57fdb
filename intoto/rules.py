"""Artifact rules: parsing, and the consuming queue that applies them.

Semantics are the reference implementation's (in-toto 3.1.0 ``verifylib``):
all artifacts of one side (materials or products) of a step start in a
queue; rules run in order; each rule consumes the queued artifacts it
authorizes; DISALLOW fails on any queued artifact it matches and REQUIRE
on a literal path that is not queued. Patterns are `fnmatch` patterns, where
``*`` also crosses ``/``.

Performance: each rule filters the queue once with one compiled pattern, and
MATCH looks destination artifacts up by path in a dict, so a rule list costs
time linear in the number of artifacts.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, filterfalse, repeat
from operator import eq, itemgetter, methodcaller

from custody.intoto.errors import FormatError, RuleError

GENERIC = frozenset({"create", "delete", "modify", "allow", "disallow", "require"})
Artifacts = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Rule:
    """One parsed artifact rule; ``words`` keeps it as written, for messages."""

    kind: str
    pattern: str
    words: tuple[str, ...]
    source_prefix: str = ""
    dest_type: str = ""
    dest_prefix: str = ""
    dest_name: str = ""

    def __str__(self) -> str:
        return " ".join(self.words)


def parse_rule(words: list[str] | tuple[str, ...], where: str = "rule") -> Rule:
    """Parse a rule such as ``["MATCH", "*", "WITH", "PRODUCTS", "FROM", "build"]``.

    Keywords are case-insensitive, as in the reference; patterns, prefixes and
    step names are kept as written.
    """
    if not isinstance(words, list | tuple) or not all(isinstance(w, str) for w in words):
        raise FormatError(f"{where} must be a list of strings")
    low = [w.lower() for w in words]
    if len(words) < 2 or low[0] not in GENERIC | {"match"}:
        raise FormatError(
            f"{where} must start with MATCH, CREATE, DELETE, MODIFY, ALLOW, DISALLOW or "
            f"REQUIRE and name a pattern, got {' '.join(words)!r}"
        )
    kind, pattern = low[0], words[1]
    if kind in GENERIC:
        if len(words) != 2:
            raise FormatError(f"{where}: {words[0]} takes exactly one pattern, got "
                              f"{' '.join(words)!r}")
        return Rule(kind, pattern, tuple(words))
    n = len(words)
    if n == 10 and (low[2], low[4], low[6], low[8]) == ("in", "with", "in", "from"):
        src, dtype, dst, name = words[3], low[5], words[7], words[9]
    elif n == 8 and (low[2], low[4], low[6]) == ("in", "with", "from"):
        src, dtype, dst, name = words[3], low[5], "", words[7]
    elif n == 8 and (low[2], low[4], low[6]) == ("with", "in", "from"):
        src, dtype, dst, name = "", low[3], words[5], words[7]
    elif n == 6 and (low[2], low[4]) == ("with", "from"):
        src, dtype, dst, name = "", low[3], "", words[5]
    else:
        raise FormatError(
            f"{where} must read MATCH <pattern> [IN <prefix>] WITH (MATERIALS|PRODUCTS) "
            f"[IN <prefix>] FROM <step>, got {' '.join(words)!r}"
        )
    if dtype not in ("materials", "products"):
        raise FormatError(f"{where}: MATCH destination must be MATERIALS or PRODUCTS, "
                          f"got {dtype!r}")
    return Rule(kind, pattern, tuple(words), src, dtype, dst, name)


@lru_cache(maxsize=1024)
def _matcher(pattern: str) -> Callable[[str], re.Match[str] | None]:
    return re.compile(fnmatch.translate(pattern)).match


def filter_paths(paths: Iterable[str], pattern: str,
                 members: Set[str] | Mapping[str, object] | None = None) -> list[str]:
    """Paths matching an fnmatch pattern (case-sensitive, as on POSIX), in their order.

    The loop runs in C (``filter`` over a compiled regular expression); a
    literal pattern is a lookup in ``members`` (the same paths as a set, when
    the caller has one), ``*`` matches everything, and ``prefix*`` with no
    other wildcard is a prefix test (fnmatch's ``*`` crosses ``/``).
    """
    if pattern == "*":
        return list(paths)
    wild = [i for i, c in enumerate(pattern) if c in "*?["]
    if not wild:
        pool = members if members is not None else paths
        return [pattern] if pattern in pool else []  # type: ignore[operator]
    if wild == [len(pattern) - 1] and pattern[-1] == "*":
        return list(filter(methodcaller("startswith", pattern[:-1]), paths))
    return list(filter(_matcher(pattern), paths))


def _match(rule: Rule, queue: list[str], source: Artifacts,
           links: Mapping[str, tuple[Artifacts, Artifacts]]) -> list[str]:
    """Queued artifacts whose hashes equal the destination step's same-named artifact.

    Written with ``map``/``compress`` so that the per-artifact work (strip the
    source prefix, add the destination prefix, two lookups, one comparison)
    runs in C: MATCH rules over tens of thousands of artifacts dominate
    verification time. ``queue`` lists the pending artifacts in the order the
    link records them, which is also the order their objects lie in memory
    and, for sorted links, the order of the destination's: walking it instead
    of a set's hash order makes the lookups about three times faster.
    """
    dest = links.get(rule.dest_name)
    if dest is None:
        return []
    dest_artifacts = dest[0] if rule.dest_type == "materials" else dest[1]
    if rule.source_prefix:
        prefix = posixpath.join(rule.source_prefix.replace("\\", "/"), "")
        full = list(filter(methodcaller("startswith", prefix), queue))
        rel = list(map(itemgetter(slice(len(prefix), None)), full))
        if rule.pattern == "*":
            selected = full
        else:
            keep = set(filter_paths(rel, rule.pattern))
            mask = list(map(keep.__contains__, rel))
            selected, rel = list(compress(full, mask)), list(compress(rel, mask))
    else:
        selected = rel = filter_paths(queue, rule.pattern, source)
        if not rule.dest_prefix and len(selected) == len(source) \
                and source.items() <= dest_artifacts.items():
            # Every artifact of this side is selected and the destination records each
            # with the same hashes (the usual MATCH between consecutive steps): one
            # subset test of dict views, run in C, instead of a lookup per artifact.
            return selected
    if rule.dest_prefix:
        head = posixpath.join(rule.dest_prefix.replace("\\", "/"), "")
        # posixpath.join semantics: an absolute remainder replaces the prefix
        dest_paths = [r if r.startswith("/") else head + r for r in rel] if any(
            map(str.startswith, rel, repeat("/"))) else list(map(head.__add__, rel))
    else:
        dest_paths = rel
    same = map(eq, map(dest_artifacts.get, dest_paths), map(source.__getitem__, selected))
    return list(compress(selected, same))


def apply_rules(
    item: str,
    source: str,
    rules: Iterable[list[str] | Rule],
    materials: Artifacts,
    products: Artifacts,
    links: Mapping[str, tuple[Artifacts, Artifacts]],
) -> set[str]:
    """Apply ``rules`` to the ``source`` side ("materials"/"products") of ``item``.

    ``links`` maps each step or inspection name to its (materials, products),
    the destinations of MATCH rules. Returns the artifacts left unconsumed;
    raises RuleError naming the item, the rule and the artifacts on refusal.

    The queue is kept lazily: until a rule consumes part of the side it is
    the side itself (no set is built), and a rule that consumes everything
    still queued empties it without a set difference. The usual rule lists
    (a MATCH or CREATE for the whole side, then ``DISALLOW *``) so cost one
    pass over the paths instead of four set constructions of them.
    """
    artifacts = materials if source == "materials" else products
    queue: set[str] | None = None  # None: every artifact of the side is still queued
    # The queue in the link's order (see _match); None after a rule consumed some.
    pending: list[str] | None = list(artifacts)
    for raw in rules:
        rule = raw if isinstance(raw, Rule) else parse_rule(raw)
        kind = rule.kind
        members: Set[str] | Mapping[str, object] = artifacts if queue is None else queue
        if pending is None:
            pending = list(filter(members.__contains__, artifacts))
        # Each branch yields distinct queued paths (a filter of ``pending``).
        consumed: Collection[str]
        if kind == "match":
            consumed = _match(rule, pending, artifacts, links)
        elif kind in ("create", "delete"):
            made, gone = (products, materials) if kind == "create" else (materials, products)
            consumed = list(filterfalse(gone.__contains__, filter(
                made.__contains__, filter_paths(pending, rule.pattern, members))))
        elif kind == "modify":
            consumed = [
                p for p in filter_paths(pending, rule.pattern, members)
                if p in materials and p in products and materials[p] != products[p]
            ]
        elif kind == "allow":
            consumed = filter_paths(pending, rule.pattern, members)
        elif kind == "disallow":
            hit = filter_paths(pending, rule.pattern, members)
            if hit:
                shown = ", ".join(sorted(hit)[:5]) + (" ..." if len(hit) > 5 else "")
                raise RuleError(
                    f"{source} rule '{rule}' of {item!r} refused {len(hit)} artifact(s) "
                    f"that no earlier rule authorized: {shown}",
                    item, source, list(rule.words), sorted(hit),
                )
            consumed = ()
        else:  # require
            if rule.pattern not in members:
                raise RuleError(
                    f"{source} rule '{rule}' of {item!r} did not find the required "
                    f"artifact {rule.pattern!r}",
                    item, source, list(rule.words), [rule.pattern],
                )
            consumed = ()
        if consumed:
            if len(consumed) == len(members):  # distinct and queued: that is all of them
                queue = set()
            else:
                if queue is None:
                    queue = set(artifacts)
                queue.difference_update(consumed)
            pending = None
    return set(artifacts) if queue is None else queue
