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

    [[steps]]                             # a keyless functionary: a CI workflow
    name = "release"                      # that Sigstore certified (docs/attestations.md)
    materials = ["MATCH dist/* WITH PRODUCTS FROM build", "DISALLOW *"]
    products = ["CREATE hello.tar.gz", "DISALLOW *"]
    [[steps.keyless]]
    issuer = "https://token.actions.githubusercontent.com"
    identity = "https://github.com/ORG/hello/.github/workflows/release.yml@refs/tags/*"

    [[inspect]]
    name = "untar"
    run = ["tar", "xzf", "hello.tar.gz"]
    materials = ["MATCH hello.tar.gz WITH PRODUCTS IN dist FROM build"]

Rules are written as one string each (split like a shell would) or as a list
of words. Key files are relative to the TOML file. The whole format, with
every rule kind and what is refused, is in docs/layouts.md.
"""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from custody.intoto.constraints import CertConstraint
from custody.intoto.errors import FormatError
from custody.intoto.metadata import key_to_dict
from custody.intoto.models import Inspection, Layout, Step, format_expires, parse_expires
from custody.intoto.rules import parse_rule

TOP_LEVEL = ("expires", "expires_in_days", "readme", "keys", "steps", "inspect")
STEP_FIELDS = ("name", "functionaries", "keyless", "threshold", "materials", "products",
               "expected_command")
KEYLESS_FIELDS = ("issuer", "identity")
INSPECTION_FIELDS = ("name", "run", "materials", "products")
#: The parameters custody's verifiers substitute (repository and client alike).
PARAMETERS = ("name", "version", "artifact")
_PARAMETER = re.compile(r"\{([^{}]*)\}")


def _known_fields(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    """Refuse a table with a key the format does not have: a typo must not pass silently."""
    if not isinstance(table, dict):
        raise FormatError(f"{where} must be a table")
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (allowed: {', '.join(allowed)})"
            raise FormatError(f"{where}: unknown key {key!r}{hint}")
    return table


def _check_parameters(words: list[str], where: str) -> None:
    for word in words:
        for name in _PARAMETER.findall(word):
            if name not in PARAMETERS:
                raise FormatError(
                    f"{where} uses parameter {{{name}}}; custody substitutes only "
                    + ", ".join(f"{{{p}}}" for p in PARAMETERS))


def _rules(value: Any, where: str) -> list[list[str]]:
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list of rules")
    out = []
    for i, rule in enumerate(value):
        words = shlex.split(rule) if isinstance(rule, str) else rule
        parse_rule(words, where=f"{where}[{i}]")
        _check_parameters(words, f"{where}[{i}]")
        out.append(list(words))
    return out


def _words(value: Any, where: str) -> list[str]:
    words = shlex.split(value) if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise FormatError(f"{where} must be a command string or a list of words")
    _check_parameters(words, where)
    return words


def _name(raw: dict[str, Any], where: str) -> str:
    if "name" not in raw:
        raise FormatError(f"{where}.name is missing")
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise FormatError(f"{where}.name must be a non-empty string")
    return raw["name"]


def _check_match_targets(layout: Layout) -> None:
    """Every MATCH rule names a step (or inspection) of this layout, with the rule's path."""
    names = {step.name for step in layout.steps} | {i.name for i in layout.inspect}
    groups: tuple[tuple[str, Sequence[Step | Inspection]], ...] = (
        ("steps", layout.steps), ("inspect", layout.inspect))
    for kind, items in groups:
        for i, item in enumerate(items):
            for field_name, rules in (("materials", item.expected_materials),
                                      ("products", item.expected_products)):
                for j, words in enumerate(rules):
                    rule = parse_rule(words)
                    if rule.kind == "match" and rule.dest_name not in names:
                        close = difflib.get_close_matches(rule.dest_name, sorted(names), n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        raise FormatError(
                            f"{kind}[{i}].{field_name}[{j}] matches FROM {rule.dest_name!r}, which "
                            f"is no step of this layout{hint}")


def fixes_expiry(path: str | Path) -> bool:
    """Whether the description names the layout's ``expires`` date itself.

    Without one the date is counted from signing (``expires_in_days``), so two
    layouts written from the same description on different days differ in
    ``expires`` only; ``custody-intoto layout new`` keeps the one it wrote
    before instead of writing another. Call after `layout_from_toml`, which
    reports an unreadable description.
    """
    return "expires" in tomllib.loads(Path(path).read_text(encoding="utf-8"))


def layout_from_toml(path: str | Path, load_key: Callable[[Path], Key]) -> Layout:
    """Build a Layout from its TOML description (unsigned), refusing anything doubtful.

    ``load_key`` reads a public key file; it is passed in (the command line
    gives `custody.keys_tooling.load_public_key`) so this package stays free of key
    file formats. Its errors are reported as the ``keys.<name>`` field's.

    Strict on purpose, since a layout is signed and then governs every
    release: unknown keys (``treshold``, ``[[step]]``), a layout without
    steps, a threshold above a step's functionaries, a MATCH rule naming no
    step and a parameter custody does not substitute are each refused with
    the path of the bad entry. docs/layouts.md describes the format.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FormatError(f"cannot read layout description {path}: {exc}") from exc
    _known_fields(data, TOP_LEVEL, "the layout description")
    keyids: dict[str, str] = {}
    keys: dict[str, dict[str, Any]] = {}
    key_table = data.get("keys", {})
    if not isinstance(key_table, dict):
        raise FormatError("keys must be a table of name = \"public key file\"")
    for name, key_path in key_table.items():
        if not isinstance(key_path, str):
            raise FormatError(f"keys.{name} must be the path of a public key file")
        try:
            key = load_key(path.parent / key_path)
        except Exception as exc:
            raise FormatError(f"keys.{name}: {exc}") from exc
        keyids[name] = key.keyid
        keys[key.keyid] = key_to_dict(key)

    def functionaries(names: Any, where: str) -> list[str]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FormatError(f"{where} must be a list of key names")
        unknown = [n for n in names if n not in keyids]
        if unknown:
            raise FormatError(f"{where} names keys not in [keys]: {', '.join(unknown)}")
        if not names:
            raise FormatError(f"{where} is empty: nobody could perform the step")
        return [keyids[n] for n in names]

    def keyless(entries: Any, where: str) -> list[CertConstraint]:
        if not isinstance(entries, list):
            raise FormatError(f"{where} must be a list of [[steps.keyless]] tables")
        out = []
        for j, entry in enumerate(entries):
            here = f"{where}[{j}]"
            _known_fields(entry, KEYLESS_FIELDS, here)
            identity = entry.get("identity")
            if not isinstance(identity, str) or not identity:
                raise FormatError(f"{here}.identity must be the certificate identity (a "
                                  "workflow URI or an e-mail address; * and ? are wildcards)")
            kind = "emails" if "@" in identity and "://" not in identity else "uris"
            out.append(CertConstraint.from_dict({"issuer": entry.get("issuer"),
                                                 kind: [identity]}, here))
        return out

    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise FormatError("the layout has no steps: describe each as a [[steps]] table")
    steps = []
    for i, raw in enumerate(raw_steps):
        where = f"steps[{i}]"
        _known_fields(raw, STEP_FIELDS, where)
        name = _name(raw, where)
        threshold = raw.get("threshold", 1)
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
            raise FormatError(f"{where}.threshold must be a positive integer")
        identities = keyless(raw.get("keyless", []), f"{where}.keyless")
        pubkeys = (functionaries(raw.get("functionaries", []), f"{where}.functionaries")
                   if "functionaries" in raw or not identities else [])
        patterns = [p for c in identities for p in (*c.uris, *c.emails)]
        if threshold > len(pubkeys) + len(identities) and not any(
                c in p for p in patterns for c in "*?["):
            raise FormatError(f"{where}.threshold {threshold} exceeds its "
                              f"{len(pubkeys) + len(identities)} functionaries")
        steps.append(Step(
            name=name, pubkeys=pubkeys, threshold=threshold,
            expected_materials=_rules(raw.get("materials", []), f"{where}.materials"),
            expected_products=_rules(raw.get("products", []), f"{where}.products"),
            expected_command=_words(raw.get("expected_command", []),
                                    f"{where}.expected_command"),
            cert_constraints=identities,
        ))
    raw_inspections = data.get("inspect", [])
    if not isinstance(raw_inspections, list):
        raise FormatError("inspect must be a list of [[inspect]] tables")
    inspections = []
    for i, raw in enumerate(raw_inspections):
        where = f"inspect[{i}]"
        _known_fields(raw, INSPECTION_FIELDS, where)
        inspections.append(Inspection(
            name=_name(raw, where), run=_words(raw.get("run", []), f"{where}.run"),
            expected_materials=_rules(raw.get("materials", []), f"{where}.materials"),
            expected_products=_rules(raw.get("products", []), f"{where}.products"),
        ))
    if "expires" in data and "expires_in_days" in data:
        raise FormatError("give expires or expires_in_days, not both")
    if "expires" in data:
        expires = data["expires"]
        if isinstance(expires, datetime):
            expires = format_expires(expires if expires.tzinfo else
                                     expires.replace(tzinfo=UTC))
        if not isinstance(expires, str):
            raise FormatError("expires must be a date-time such as 2027-06-30T00:00:00Z")
        parse_expires(expires)
    else:
        days = data.get("expires_in_days", 365)
        if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 36500:
            raise FormatError("expires_in_days must be a whole number of days, 1 to 36500")
        expires = format_expires(datetime.now(UTC) + timedelta(days=days))
    readme = data.get("readme", "")
    if not isinstance(readme, str):
        raise FormatError("readme must be a string")
    layout = Layout(steps=steps, inspect=inspections, keys=keys, expires=expires,
                    readme=readme)
    _check_match_targets(layout)
    # Round-trip through the validating parser: a description that builds a
    # layout the parser refuses (duplicate names, ...) fails here, not later.
    return Layout.from_dict(layout.to_dict())
