"""The in-toto v1.0 payloads: Layout, Step, Inspection and Link.

Plain data classes that read and write exactly the JSON of the in-toto
specification (and of the reference implementation, in-toto 3.1.0). Parsing
validates as it goes and names the offending field in the error, because a
release engineer debugging a refused layout needs "steps[1].threshold must be
a positive integer", not a stack trace.

Keys in a layout stay plain securesystemslib key dictionaries (with their
``keyid``): that is the wire format, and `securesystemslib.signer.Key` turns
them into verifiers when needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

from custody.intoto.constraints import CertConstraint, constraints_from_list
from custody.intoto.errors import FormatError
from custody.intoto.rules import parse_rule

ArtifactHashes = dict[str, dict[str, str]]
"""``{path: {algorithm: hexdigest}}``, the shape of ``materials`` and ``products``."""

LINK_FILENAME = "{step}.{keyid:.8}.link"
SUBLAYOUT_DIRNAME = "{step}.{keyid:.8}"
#: A keyless functionary's evidence: ``<step>.<name>.sigstore.json`` beside the links.
BUNDLE_SUFFIX = ".sigstore.json"
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_HEX_OR_EMPTY = re.compile(r"[0-9a-fA-F]*\Z")
_EXPIRES = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\Z")


def link_filename(step: str, keyid: str) -> str:
    """The reference's link file name: ``<step>.<first 8 hex of keyid>.link``."""
    return LINK_FILENAME.format(step=step, keyid=keyid)


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise FormatError(f"{where}.{name} is missing")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(f"{where}.{name} has the wrong type ({type(value).__name__})")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{where} must be a list of strings")
    return value


def _check_type(data: Any, expected: str, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise FormatError(f"{where} must be a JSON object")
    if data.get("_type") != expected:
        raise FormatError(f"{where}._type must be {expected!r}, got {data.get('_type')!r}")
    return data


def check_artifacts(value: Any, where: str) -> ArtifactHashes:
    """Validate ``{path: {algorithm: hexdigest}}`` and return it unchanged.

    Links record tens of thousands of artifacts, so the common case (all
    well formed) is checked with C-level iteration: every hash object non-empty,
    and every digest joined into one string that must be all hex. Only when that
    fails does the slow walk run, to name the artifact at fault.
    """
    if not isinstance(value, dict):
        raise FormatError(f"{where} must be an object of path to hashes")
    hashes = list(value.values())
    try:
        digests = list(chain.from_iterable(map(dict.values, hashes)))
        if all(hashes) and all(digests) and _HEX_OR_EMPTY.match("".join(digests)):
            return value
    except TypeError:
        pass
    hex_match = _HEX.match
    for path, hashes in value.items():
        if not isinstance(hashes, dict) or not hashes:
            raise FormatError(f"{where}[{path!r}] must be a non-empty object of hashes")
        for algorithm, digest in hashes.items():
            if not isinstance(digest, str) or not hex_match(digest):
                raise FormatError(f"{where}[{path!r}].{algorithm} must be a hex digest")
    return value


def _rules(value: Any, where: str) -> list[list[str]]:
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list of rules")
    for i, rule in enumerate(value):
        parse_rule(_str_list(rule, f"{where}[{i}]"), where=f"{where}[{i}]")
    return value


def parse_expires(value: str) -> datetime:
    """Parse the layout's ``expires`` (ISO 8601, UTC, ``Z`` suffix)."""
    if not isinstance(value, str) or not _EXPIRES.match(value):
        raise FormatError(f"layout.expires must look like 2030-01-01T00:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FormatError(f"layout.expires is not a valid date: {value!r}") from exc


def format_expires(when: datetime) -> str:
    """Write a datetime as the layout's ``expires`` (second precision, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Link:
    """Evidence that a step (or inspection) ran: what it used and what it made."""

    name: str
    materials: ArtifactHashes = field(default_factory=dict)
    products: ArtifactHashes = field(default_factory=dict)
    byproducts: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    TYPE = "link"

    @classmethod
    def from_dict(cls, data: Any, where: str = "link") -> Link:
        data = _check_type(data, cls.TYPE, where)
        return cls(
            name=_require(data, "name", str, where),
            materials=check_artifacts(data.get("materials", {}), f"{where}.materials"),
            products=check_artifacts(data.get("products", {}), f"{where}.products"),
            byproducts=_require(data, "byproducts", dict, where) if "byproducts" in data else {},
            command=_str_list(data.get("command", []), f"{where}.command"),
            environment=(
                _require(data, "environment", dict, where) if "environment" in data else {}
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": self.TYPE,
            "name": self.name,
            "materials": self.materials,
            "products": self.products,
            "byproducts": self.byproducts,
            "command": self.command,
            "environment": self.environment,
        }


@dataclass
class Step:
    """A step of the supply chain: who may perform it and what it may touch."""

    name: str
    pubkeys: list[str] = field(default_factory=list)
    threshold: int = 1
    expected_materials: list[list[str]] = field(default_factory=list)
    expected_products: list[list[str]] = field(default_factory=list)
    expected_command: list[str] = field(default_factory=list)
    #: Keyless functionaries (`custody.intoto.constraints.CertConstraint`), in-toto-golang's
    #: field name.
    cert_constraints: list[CertConstraint] = field(default_factory=list)

    TYPE = "step"

    @classmethod
    def from_dict(cls, data: Any, where: str = "step") -> Step:
        data = _check_type(data, cls.TYPE, where)
        threshold = _require(data, "threshold", int, where)
        if threshold < 1:
            raise FormatError(f"{where}.threshold must be a positive integer")
        pubkeys = _str_list(_require(data, "pubkeys", list, where), f"{where}.pubkeys")
        for keyid in pubkeys:
            if not _HEX.match(keyid):
                raise FormatError(f"{where}.pubkeys has a key id that is not hex: {keyid!r}")
        return cls(
            name=_require(data, "name", str, where),
            pubkeys=pubkeys,
            threshold=threshold,
            expected_materials=_rules(data.get("expected_materials", []),
                                      f"{where}.expected_materials"),
            expected_products=_rules(data.get("expected_products", []),
                                     f"{where}.expected_products"),
            expected_command=_str_list(data.get("expected_command", []),
                                       f"{where}.expected_command"),
            cert_constraints=constraints_from_list(data["cert_constraints"],
                                                   f"{where}.cert_constraints")
            if "cert_constraints" in data else [],
        )

    def to_dict(self) -> dict[str, Any]:
        data = {
            "_type": self.TYPE,
            "name": self.name,
            "threshold": self.threshold,
            "pubkeys": self.pubkeys,
            "expected_materials": self.expected_materials,
            "expected_products": self.expected_products,
            "expected_command": self.expected_command,
        }
        if self.cert_constraints:  # absent otherwise: the reference reads the layout as before
            data["cert_constraints"] = [c.to_dict() for c in self.cert_constraints]
        return data


@dataclass
class Inspection:
    """A check the verifier itself runs on the delivered artifacts."""

    name: str
    run: list[str] = field(default_factory=list)
    expected_materials: list[list[str]] = field(default_factory=list)
    expected_products: list[list[str]] = field(default_factory=list)

    TYPE = "inspection"

    @classmethod
    def from_dict(cls, data: Any, where: str = "inspection") -> Inspection:
        data = _check_type(data, cls.TYPE, where)
        return cls(
            name=_require(data, "name", str, where),
            run=_str_list(data.get("run", []), f"{where}.run"),
            expected_materials=_rules(data.get("expected_materials", []),
                                      f"{where}.expected_materials"),
            expected_products=_rules(data.get("expected_products", []),
                                     f"{where}.expected_products"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": self.TYPE,
            "name": self.name,
            "run": self.run,
            "expected_materials": self.expected_materials,
            "expected_products": self.expected_products,
        }


def _check_key(keyid: str, key: Any, where: str) -> dict[str, Any]:
    if not isinstance(key, dict):
        raise FormatError(f"{where} must be a key object")
    for name in ("keytype", "scheme"):
        _require(key, name, str, where)
    keyval = _require(key, "keyval", dict, where)
    if not isinstance(keyval.get("public"), str):
        raise FormatError(f"{where}.keyval.public is missing")
    if keyval.get("private"):
        raise FormatError(f"{where} holds a private key; layouts carry public keys only")
    if key.get("keyid", keyid) != keyid:
        raise FormatError(f"{where}.keyid does not match the key id it is listed under")
    return key


@dataclass
class Layout:
    """The project owner's signed plan of the supply chain."""

    steps: list[Step] = field(default_factory=list)
    inspect: list[Inspection] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    expires: str = field(
        default_factory=lambda: format_expires(datetime.now(UTC) + timedelta(days=30))
    )
    readme: str = ""

    TYPE = "layout"

    @classmethod
    def from_dict(cls, data: Any, where: str = "layout") -> Layout:
        data = _check_type(data, cls.TYPE, where)
        keys = _require(data, "keys", dict, where)
        for keyid, key in keys.items():
            _check_key(keyid, key, f"{where}.keys[{keyid[:8]}]")
        steps = [
            Step.from_dict(s, f"{where}.steps[{i}]")
            for i, s in enumerate(_require(data, "steps", list, where))
        ]
        inspect = [
            Inspection.from_dict(s, f"{where}.inspect[{i}]")
            for i, s in enumerate(_require(data, "inspect", list, where))
        ]
        seen: set[str] = set()
        items: list[Step | Inspection] = [*steps, *inspect]
        for item in items:
            if item.name in seen:
                raise FormatError(f"{where} names {item.name!r} twice; step and inspection "
                                  "names must be unique")
            seen.add(item.name)
        expires = _require(data, "expires", str, where)
        parse_expires(expires)
        readme = data.get("readme", "")
        if not isinstance(readme, str):
            raise FormatError(f"{where}.readme must be a string")
        return cls(steps=steps, inspect=inspect, keys=keys, expires=expires, readme=readme)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": self.TYPE,
            "steps": [s.to_dict() for s in self.steps],
            "inspect": [i.to_dict() for i in self.inspect],
            "keys": self.keys,
            "expires": self.expires,
            "readme": self.readme,
        }

    @property
    def expires_at(self) -> datetime:
        return parse_expires(self.expires)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


def payload_from_dict(data: Any, where: str = "signed") -> Link | Layout:
    """Parse a payload whose ``_type`` says whether it is a link or a layout."""
    kind = data.get("_type") if isinstance(data, dict) else None
    if kind == Link.TYPE:
        return Link.from_dict(data, where)
    if kind == Layout.TYPE:
        return Layout.from_dict(data, where)
    raise FormatError(f"{where}._type must be 'link' or 'layout', got {kind!r}")
