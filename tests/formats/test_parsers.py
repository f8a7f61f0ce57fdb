"""Property tests: custody's parsers take any input and either parse it or refuse it cleanly.

Every generated case must end in a value or a `FormatError` (the one sentence
the client prints as a TUF refusal), never another exception.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.formats.custom import InTotoCustom
from custody.formats.errors import FormatError
from custody.formats.index import PackageIndex
from custody.formats.jsonlimits import depth, loads_bounded

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
VERSIONS = st.sampled_from(["1.0.0", "1.0", "2.4.0rc1", "0!1.0", "x", "", "1" * 70, "1.0.0.0"])
TARGET = st.fixed_dictionaries({"target": st.one_of(st.text(max_size=30), st.integers())},
                               optional={"extra": JSON})
ENTRY = st.fixed_dictionaries({"target": st.one_of(st.text(max_size=30), st.integers())},
                              optional={"published": JSON, "extra": JSON})
BUILDS = st.fixed_dictionaries(  # a version of platform builds (issue 24)
    {"builds": st.dictionaries(st.sampled_from(["linux-x86_64", "darwin-arm64", "Linux", "",
                                                "linux-x86_64/..", "a" * 40]),
                               TARGET | JSON, max_size=3) | JSON},
    optional={"published": JSON, "target": JSON})
INDEXES = st.fixed_dictionaries(
    {"name": st.sampled_from(["hello", "Hello", "", "a" * 70, "h/x"])},
    optional={"versions": st.dictionaries(VERSIONS, ENTRY | BUILDS | JSON, max_size=4) | JSON,
              "channels": st.dictionaries(st.sampled_from(["stable", "beta", "Bad", ""]),
                                          VERSIONS | JSON, max_size=3) | JSON})
SETTINGS = settings(max_examples=int(os.environ.get("CUSTODY_FUZZ_EXAMPLES", "300")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _parses_or_refuses(parse, value) -> None:
    try:
        parse(value)
    except FormatError as exc:
        assert str(exc) and "\n" not in str(exc)


@SETTINGS
@given(INDEXES | JSON)
def test_package_index_from_any_structure(data):
    _parses_or_refuses(lambda d: PackageIndex.from_dict(d, "packages/x/index.json"), data)


@SETTINGS
@given(INDEXES)
def test_a_parsed_index_round_trips(data):
    try:
        index = PackageIndex.from_dict(data)
    except FormatError:
        return
    assert PackageIndex.from_bytes(index.to_bytes()) == index


@SETTINGS
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_package_index_from_any_bytes(data):
    _parses_or_refuses(PackageIndex.from_bytes, data)


@SETTINGS
@given(st.none() | JSON | st.fixed_dictionaries({"in-toto": JSON | st.fixed_dictionaries(
    {"layout": JSON, "links": st.lists(JSON, max_size=3) | JSON})}))
def test_custom_metadata_from_any_structure(custom):
    _parses_or_refuses(InTotoCustom.from_custom, custom)


@SETTINGS
@given(st.binary(max_size=300))
def test_bounded_json_from_any_bytes(data):
    _parses_or_refuses(lambda d: loads_bounded(d, "f"), data)


@SETTINGS
@given(JSON)
def test_depth_is_the_nesting_json_has(value):
    def nesting(v) -> int:
        if isinstance(v, list):
            return 1 + max((nesting(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((nesting(x) for x in v.values()), default=0)
        return 0

    assert depth(json.dumps(value).encode()) == nesting(value)


def test_hostile_sizes_are_refused_before_parsing():
    for data, words in ((b"[" * 100_000 + b"]" * 100_000, "nests deeper than 32"),
                        (b" " * (17 << 20), "over the limit")):
        try:
            loads_bounded(data, "f")
        except FormatError as exc:
            assert words in str(exc)
        else:
            raise AssertionError("accepted")
