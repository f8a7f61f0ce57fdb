"""Property tests: the rule engine and canonical JSON agree with the reference."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from in_toto import exceptions as ref_errors
from in_toto import verifylib
from in_toto.models.link import Link as RefLink
from securesystemslib.formats import encode_canonical as sslib_canonical

from custody.intoto.canonical import encode_canonical
from custody.intoto.errors import FormatError, RuleError
from custody.intoto.rules import apply_rules

# A small universe of names, so that rules, prefixes and artifacts meet often.
SEGMENTS = st.sampled_from(["a", "b.py", "src", "dist"])
PATHS = st.lists(SEGMENTS, min_size=1, max_size=2).map("/".join)
HASHES = st.sampled_from(["aa", "bb"]).map(lambda h: {"sha256": h})
ARTIFACTS = st.dictionaries(PATHS, HASHES, max_size=12)


@st.composite
def related_links(draw):
    """Two steps whose artifacts overlap (often under a prefix), so MATCH has work to do."""
    pool = draw(st.lists(PATHS, min_size=1, max_size=10, unique=True))
    prefix = draw(st.sampled_from(["", "src/", "dist/"]))
    pool = pool + [prefix + p for p in pool]

    # Each path has one true content; a side records it, or (flip) a tampered one,
    # so MATCH meets both equal and unequal hashes for the same path.
    truth = {p: draw(HASHES) for p in pool}

    def side():
        chosen = draw(st.lists(st.sampled_from(pool), max_size=12, unique=True))
        flips = draw(st.lists(st.booleans(), min_size=len(chosen), max_size=len(chosen)))
        pairs = zip(chosen, flips, strict=True)
        return {p: ({"sha256": "ff"} if flip else truth[p]) for p, flip in pairs}

    return {"s1": (side(), side()), "s2": (side(), side())}
PATTERNS = st.one_of(
    PATHS,
    st.sampled_from(["*", "*", "*.py", "src/*", "*/a", "?", "[ab]*", "dist/*", "a*"]),
)
PREFIXES = st.sampled_from(["", "", "", "src", "dist", "src/"])


MATCH = st.builds(
    lambda pat, src, dtype, dst, name: (
        ["MATCH", pat]
        + (["IN", src] if src else [])
        + ["WITH", dtype]
        + (["IN", dst] if dst else [])
        + ["FROM", name]
    ),
    PATTERNS, PREFIXES, st.sampled_from(["MATERIALS", "PRODUCTS", "products"]), PREFIXES,
    st.sampled_from(["s1", "s2", "s2", "missing"]),
)
GENERIC = st.builds(
    lambda kind, pattern: [kind, pattern],
    st.sampled_from(["CREATE", "DELETE", "MODIFY", "ALLOW", "DISALLOW", "allow", "REQUIRE"]),
    PATTERNS,
)
# MATCH carries most of the semantics (prefixes, hashes, destinations): weight it up.
RULE = st.one_of(MATCH, MATCH, GENERIC)


def _reference(source_type, rules, links):
    ref_links = {
        name: RefLink(name=name, materials=m, products=p) for name, (m, p) in links.items()
    }
    try:
        verifylib.verify_item_rules("s1", source_type, rules, ref_links)
    except ref_errors.RuleVerificationError:
        return "refused"
    return "passed"


def _ours(source_type, rules, links):
    materials, products = links["s1"]
    try:
        apply_rules("s1", source_type, rules, materials, products, links)
    except RuleError:
        return "refused"
    return "passed"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    links=related_links(),
    rules=st.lists(RULE, max_size=6),
    source_type=st.sampled_from(["materials", "products"]),
)
def test_rule_engine_agrees_with_reference(links, rules, source_type):
    assert _ours(source_type, rules, links) == _reference(source_type, rules, links)


@settings(max_examples=400, deadline=None)
@given(links=related_links(), rules=st.lists(RULE, max_size=5))
def test_unconsumed_queue_agrees_with_reference(links, rules):
    """Beyond pass/refuse: a trailing DISALLOW * refuses exactly the same leftovers."""
    rules = [*rules, ["DISALLOW", "*"]]
    assert _ours("products", rules, links) == _reference("products", rules, links)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


# Strings where encoders differ: control characters, quotes, backslashes, the
# characters JSON encoders like to escape (/, U+2028, U+2029, DEL), accents, CJK
# and characters beyond the BMP (surrogate pairs in UTF-16 based encoders).
NASTY = st.text(st.sampled_from(
    ['"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
     "\u2028", "\u2029", "é", "ÿ", "€", "中", "\uffff", "\U0001f600", "\U0010ffff", "a", "0"]),
    max_size=12)
ESCAPE_HEAVY = st.recursive(
    st.none() | st.booleans() | st.integers() | NASTY,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(NASTY | st.text(max_size=4), children, max_size=5),
    max_leaves=24,
)


@settings(max_examples=500, deadline=None)
@given(JSON)
def test_canonical_json_equals_securesystemslib(value):
    assert encode_canonical(value) == sslib_canonical(value).encode("utf-8")


@settings(max_examples=1000, deadline=None)
@given(ESCAPE_HEAVY)
def test_canonical_json_equals_securesystemslib_on_escapes_and_big_integers(value):
    """Non-ASCII, escape-heavy keys and strings, and integers of any size."""
    assert encode_canonical(value) == sslib_canonical(value).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(ESCAPE_HEAVY)
def test_canonical_json_round_trips_through_loads(value):
    """What securesystemslib writes, `loads` reads back to the same value."""
    from custody.intoto.canonical import loads

    assert loads(json.dumps(value)) == value


def test_canonical_json_refuses_floats():
    with pytest.raises(FormatError):
        encode_canonical({"a": [1.5]})
