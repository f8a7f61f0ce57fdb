"""Artifact rules, case by case (the property tests compare with the reference)."""

from __future__ import annotations

import pytest

from custody.intoto.errors import FormatError, RuleError
from custody.intoto.rules import apply_rules, parse_rule

H1, H2 = {"sha256": "aa"}, {"sha256": "bb"}


def run(rules, materials=None, products=None, source="products", links=None):
    materials, products = materials or {}, products or {}
    links = {"me": (materials, products), **(links or {})}
    return apply_rules("step me", source, rules, materials, products, links)


def test_match_with_prefixes_consumes_only_equal_hashes_under_the_prefix():
    links = {"build": ({}, {"dist/x.py": H1, "dist/y.py": H1})}
    left = run([["MATCH", "*", "IN", "pkg", "WITH", "PRODUCTS", "IN", "dist", "FROM", "build"]],
               products={"pkg/x.py": H1, "pkg/y.py": H2, "x.py": H1}, links=links)
    assert left == {"pkg/y.py", "x.py"}


def test_match_against_a_missing_step_consumes_nothing():
    assert run([["MATCH", "*", "WITH", "PRODUCTS", "FROM", "nowhere"]],
               products={"a": H1}) == {"a"}


def test_create_delete_modify():
    m = {"kept": H1, "changed": H1, "gone": H1}
    p = {"kept": H1, "changed": H2, "new": H1}
    assert run([["CREATE", "*"]], m, p) == {"kept", "changed"}
    assert run([["MODIFY", "*"]], m, p) == {"kept", "new"}
    assert run([["DELETE", "*"]], m, p, source="materials") == {"kept", "changed"}


def test_disallow_names_item_rule_and_artifacts():
    with pytest.raises(RuleError) as info:
        run([["ALLOW", "*.py"], ["DISALLOW", "*"]], products={"a.py": H1, "evil.sh": H1})
    assert info.value.artifacts == ["evil.sh"]
    assert "DISALLOW *" in str(info.value) and "step me" in str(info.value)
    assert "evil.sh" in str(info.value)


def test_require_is_literal_and_sees_only_the_queue():
    assert run([["REQUIRE", "a.py"]], products={"a.py": H1}) == {"a.py"}
    with pytest.raises(RuleError, match=r"required artifact 'a\.py'"):
        run([["ALLOW", "*"], ["REQUIRE", "a.py"]], products={"a.py": H1})


def test_first_rule_to_consume_wins():
    links = {"b": ({}, {"x": H2})}
    with pytest.raises(RuleError):  # ALLOW consumed nothing; MATCH fails on the hash
        run([["MATCH", "x", "WITH", "PRODUCTS", "FROM", "b"], ["DISALLOW", "x"]],
            products={"x": H1}, links=links)
    assert run([["ALLOW", "x"], ["DISALLOW", "x"]], products={"x": H1}) == set()


@pytest.mark.parametrize("words", [
    [], ["ALLOW"], ["PERMIT", "*"], ["ALLOW", "a", "b"], ["MATCH", "*", "FROM", "x"],
    ["MATCH", "*", "WITH", "ARTIFACTS", "FROM", "x"], ["MATCH", "*", "IN", "a", "WITH"],
])
def test_malformed_rules_are_refused(words):
    with pytest.raises(FormatError):
        parse_rule(words)


def test_keywords_are_case_insensitive():
    rule = parse_rule(["match", "*", "with", "products", "in", "dist", "from", "build"])
    assert (rule.kind, rule.dest_type, rule.dest_prefix, rule.dest_name) == (
        "match", "products", "dist", "build")


def test_large_artifact_sets():
    """100k artifacts through MATCH + DISALLOW (timing lives in bench/verify.py)."""
    products = {f"src/f{i}.py": {"sha256": f"{i:064x}"} for i in range(100_000)}
    tampered = dict(products, **{"src/f7.py": {"sha256": "ee"}})
    links = {"tag": ({}, tampered)}
    with pytest.raises(RuleError) as info:
        run([["MATCH", "*", "WITH", "PRODUCTS", "FROM", "tag"], ["DISALLOW", "*"]],
            products=products, links=links)
    assert info.value.artifacts == ["src/f7.py"]
