"""Write layouts from a short TOML description instead of hand-written JSON.

Example::

    expires = "2027-06-30T00:00:00Z"     # or: expires_in_days = 365
    readme = "hello: tag, two rebuilders, package"

    [keys]                                # name = public key file (PEM or key JSON)
    alice = "keys/alice.pub"
    rebuilder1 = "keys/rb1.pub"
    rebuilder2 = "keys/rb2.pub"

    [[steps]]
    name = "tag"
    functionaries = ["alice"]
    expected_command = ["git", "tag", "v1.0"]
    materials = []
    products = ["CREATE src/*", "DISALLOW *"]

    [[steps]]
    name = "build"
    functionaries = ["rebuilder1", "rebuilder2"]
    threshold = 2
    materials = ["MATCH src/* WITH PRODUCTS FROM tag", "DISALLOW *"]
    products = ["CREATE dist/hello.tar.gz", "DISALLOW *"]

    [[inspect]]
    name = "untar"
    run = ["tar", "xzf", "hello.tar.gz"]
    materials = ["MATCH hello.tar.gz WITH PRODUCTS IN dist FROM build"]

Rules are written as one string each (split like a shell would) or as a list
of words. Key files are relative to the TOML file.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from intoto.errors import FormatError
from intoto.metadata import key_to_dict
from intoto.models import Inspection, Layout, Step, format_expires, parse_expires
from intoto.rules import parse_rule


def _rules(value: Any, where: str) -> list[list[str]]:
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list of rules")
    out = []
    for i, rule in enumerate(value):
        words = shlex.split(rule) if isinstance(rule, str) else rule
        parse_rule(words, where=f"{where}[{i}]")
        out.append(list(words))
    return out


def _words(value: Any, where: str) -> list[str]:
    words = shlex.split(value) if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise FormatError(f"{where} must be a command string or a list of words")
    return words


def layout_from_toml(path: str | Path, load_key: Callable[[Path], Key]) -> Layout:
    """Build a Layout from its TOML description (unsigned).

    ``load_key`` reads a public key file; it is passed in (the command line
    gives `keys_tooling.load_public_key`) so this package stays free of key
    file formats. Its errors are reported as the ``keys.<name>`` field's.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FormatError(f"cannot read layout description {path}: {exc}") from exc
    keyids: dict[str, str] = {}
    keys: dict[str, dict[str, Any]] = {}
    for name, key_path in dict(data.get("keys", {})).items():
        try:
            key = load_key(path.parent / key_path)
        except Exception as exc:
            raise FormatError(f"keys.{name}: {exc}") from exc
        keyids[name] = key.keyid
        keys[key.keyid] = key_to_dict(key)

    def functionaries(names: Any, where: str) -> list[str]:
        if not isinstance(names, list):
            raise FormatError(f"{where} must be a list of key names")
        unknown = [n for n in names if n not in keyids]
        if unknown:
            raise FormatError(f"{where} names keys not in [keys]: {', '.join(unknown)}")
        return [keyids[n] for n in names]

    steps = []
    for i, raw in enumerate(data.get("steps", [])):
        where = f"steps[{i}]"
        if "name" not in raw:
            raise FormatError(f"{where}.name is missing")
        threshold = raw.get("threshold", 1)
        if not isinstance(threshold, int) or threshold < 1:
            raise FormatError(f"{where}.threshold must be a positive integer")
        pubkeys = functionaries(raw.get("functionaries", []), f"{where}.functionaries")
        if threshold > len(pubkeys):
            raise FormatError(f"{where}.threshold {threshold} exceeds its "
                              f"{len(pubkeys)} functionaries")
        steps.append(Step(
            name=raw["name"], pubkeys=pubkeys, threshold=threshold,
            expected_materials=_rules(raw.get("materials", []), f"{where}.materials"),
            expected_products=_rules(raw.get("products", []), f"{where}.products"),
            expected_command=_words(raw.get("expected_command", []),
                                    f"{where}.expected_command"),
        ))
    inspections = []
    for i, raw in enumerate(data.get("inspect", [])):
        where = f"inspect[{i}]"
        if "name" not in raw:
            raise FormatError(f"{where}.name is missing")
        inspections.append(Inspection(
            name=raw["name"], run=_words(raw.get("run", []), f"{where}.run"),
            expected_materials=_rules(raw.get("materials", []), f"{where}.materials"),
            expected_products=_rules(raw.get("products", []), f"{where}.products"),
        ))
    if "expires" in data:
        expires = data["expires"]
        if isinstance(expires, datetime):
            expires = format_expires(expires if expires.tzinfo else
                                     expires.replace(tzinfo=UTC))
        parse_expires(expires)
    else:
        days = data.get("expires_in_days", 365)
        expires = format_expires(datetime.now(UTC) + timedelta(days=days))
    layout = Layout(steps=steps, inspect=inspections, keys=keys, expires=expires,
                    readme=str(data.get("readme", "")))
    # Round-trip through the validating parser: a description that builds a
    # layout the parser refuses (duplicate names, ...) fails here, not later.
    return Layout.from_dict(layout.to_dict())
