"""A layout, written out for people: ``custody-intoto layout show``.

The JSON of a layout is exact but hard to review: key ids instead of names,
rules as word lists, an envelope around it all. Before signing a layout or
publishing it, an owner should be able to read what it demands; this module
renders one (classic or DSSE) as plain text, naming each key by the file it
came from when the reader supplies the public keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from securesystemslib.signer import Key

from custody.intoto.metadata import Envelope, Metadata
from custody.intoto.models import Layout, parse_expires


def _rules(rules: list[list[str]]) -> str:
    return "; ".join(" ".join(rule) for rule in rules) or "(none)"


def describe_layout(metadata: Metadata, key_names: Mapping[str, str] | None = None,
                    now: datetime | None = None) -> str:
    """The layout in ``metadata`` as text; ``key_names`` maps key ids to where they came from.

    Signatures are checked against the keys the layout itself lists and the
    keys of ``key_names`` (given as `Key` objects through `describe` callers);
    a signature by a key the reader did not supply is shown as "not checked".
    """
    layout = metadata.payload
    if not isinstance(layout, Layout):
        raise TypeError("not a layout")
    names = dict(key_names or {})
    now = now or datetime.now(UTC)

    def who(keyid: str) -> str:
        return f"{keyid[:8]}" + (f" ({names[keyid]})" if keyid in names else "")

    expires = parse_expires(layout.expires)
    days = (expires - now).days
    state = f"in {days} days" if expires > now else "EXPIRED"
    kind = "DSSE envelope" if isinstance(metadata, Envelope) else "classic signed JSON"
    lines = [f"layout ({kind}), expires {layout.expires} ({state})"]
    if layout.readme:
        lines.append(f"readme: {layout.readme}")
    lines.append(f"functionary keys ({len(layout.keys)}):")
    for keyid, key in sorted(layout.keys.items()):
        lines.append(f"  {who(keyid)}  {key.get('keytype', '?')}/{key.get('scheme', '?')}")
    lines.append(f"steps ({len(layout.steps)}):")
    for number, step in enumerate(layout.steps, 1):
        performers = [who(k) for k in step.pubkeys] + [
            f"keyless {c}" for c in step.cert_constraints]
        lines.append(f"  {number}. {step.name}: {step.threshold} of {', '.join(performers)}")
        if step.expected_command:
            lines.append(f"     expected command: {' '.join(step.expected_command)}")
        lines.append(f"     materials: {_rules(step.expected_materials)}")
        lines.append(f"     products:  {_rules(step.expected_products)}")
    if layout.inspect:
        lines.append(f"inspections ({len(layout.inspect)}), run by the verifier:")
        for inspection in layout.inspect:
            lines.append(f"  {inspection.name}: {' '.join(inspection.run)}")
            lines.append(f"     materials: {_rules(inspection.expected_materials)}")
            lines.append(f"     products:  {_rules(inspection.expected_products)}")
    return "\n".join(lines)


def describe_signatures(metadata: Metadata, keys: Mapping[str, Key],
                        key_names: Mapping[str, str]) -> str:
    """One line per signature: valid, INVALID, or not checked (no key supplied)."""
    lines = [f"signatures ({len(metadata.signatures)}):"]
    for signature in metadata.signatures:
        key = keys.get(signature.keyid)
        label = signature.keyid[:8] + (f" ({key_names[signature.keyid]})"
                                       if signature.keyid in key_names else "")
        if key is None:
            verdict = "not checked: give its public key with -k"
        else:
            verdict = "valid" if metadata.is_signed_by(key) else "INVALID"
        lines.append(f"  {label}: {verdict}")
    return "\n".join(lines)
