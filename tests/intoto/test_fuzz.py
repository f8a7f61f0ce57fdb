"""Hypothesis over the in-toto parsers: link and layout JSON (both envelopes) and layout TOML.

Whatever the bytes, the parsers return metadata or raise the engine's
`IntotoError` (one sentence); never another exception. ``make fuzz`` runs
more examples (``CUSTODY_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.intoto.errors import IntotoError
from custody.intoto.layout_toml import layout_from_toml
from custody.intoto.metadata import metadata_from_bytes

EXAMPLES = int(os.environ.get("CUSTODY_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
FIELDS = st.sampled_from(["_type", "name", "steps", "keys", "expires", "materials", "products",
                          "byproducts", "command", "environment", "pubkeys", "threshold",
                          "expected_materials", "expected_command", "inspect", "run"])
SHAPED = st.fixed_dictionaries({
    "signed": st.dictionaries(FIELDS, JSON, max_size=6).map(
        lambda d: {"_type": "link", **d} if d.get("_type") is None else d),
    "signatures": st.lists(st.dictionaries(st.sampled_from(["keyid", "sig", "x"]), JSON),
                           max_size=2) | JSON,
})
ENVELOPE = st.fixed_dictionaries({
    "payloadType": st.sampled_from(["application/vnd.in-toto+json", "x"]),
    "payload": st.binary(max_size=60).map(lambda b: __import__("base64").b64encode(b).decode())
    | JSON,
    "signatures": JSON,
})


def parses_or_refuses(data: bytes) -> None:
    try:
        metadata = metadata_from_bytes(data, where="fuzz.link")
        metadata.payload  # noqa: B018 - parsing the payload is part of reading it
    except IntotoError as exc:
        assert str(exc)


@SETTINGS
@given(SHAPED | ENVELOPE | JSON)
def test_link_and_layout_json(value):
    parses_or_refuses(json.dumps(value).encode())
    parses_or_refuses(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    parses_or_refuses(data)


TOML_VALUES = st.one_of(st.integers(-3, 5), st.text(max_size=12).map(json.dumps),
                        st.lists(st.text(max_size=8), max_size=3).map(json.dumps),
                        st.sampled_from(['"MATCH * WITH PRODUCTS FROM a"', '["a"]', "true",
                                         '"CREATE {name}"', '"DISALLOW *"']))
TOML_KEYS = st.sampled_from(["name", "functionaries", "threshold", "materials", "products",
                             "expected_command", "treshold", "run", "expires_in_days",
                             "readme", "keys"])


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["", "[[steps]]", "[[inspect]]", "[keys]",
                                           "[[step]]"]),
                          st.lists(st.tuples(TOML_KEYS, TOML_VALUES), max_size=4)),
                max_size=4)
       | st.binary(max_size=100).map(lambda b: [("raw", b)]))
def test_layout_toml(tmp_path_factory, sections):
    path = Path(tmp_path_factory.mktemp("toml")) / "layout.toml"
    if sections and sections[0][0] == "raw":
        path.write_bytes(sections[0][1])
    else:
        lines = []
        for header, pairs in sections:
            lines.append(header)
            lines += [f"{key} = {value}" for key, value in pairs]
        path.write_text("\n".join(lines))
    try:
        layout_from_toml(path, lambda p: (_ for _ in ()).throw(OSError("no key files here")))
    except IntotoError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
