"""Certificate constraints: how a layout names a keyless functionary.

In-toto-golang calls a step's certificate-based functionaries its
``cert_constraints``; custody uses the same field for Sigstore identities,
each an OIDC ``issuer`` (custody's addition: a Sigstore certificate is only as
good as the identity provider that vouched for it) and the identities it may
have, as ``uris`` and/or ``emails`` patterns. Verifying evidence against them
is `custody.intoto.keyless`'s job; this module only reads and writes the layout field,
so parsing a layout never imports the sigstore library.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from custody.intoto.errors import FormatError


@dataclass(frozen=True)
class CertConstraint:
    """One keyless functionary: an OIDC issuer and the identities (SAN patterns) it may have."""

    issuer: str
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, where: str = "cert_constraint") -> CertConstraint:
        if not isinstance(data, dict):
            raise FormatError(f"{where} must be a JSON object")
        unknown = sorted(set(data) - {"issuer", "uris", "emails", "common_name"})
        if unknown:
            raise FormatError(f"{where} has unknown field(s) {', '.join(unknown)}")
        issuer = data.get("issuer")
        if not isinstance(issuer, str) or "://" not in issuer:
            raise FormatError(f"{where}.issuer must be the OIDC issuer URL")
        lists = {}
        for name in ("uris", "emails"):
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise FormatError(f"{where}.{name} must be a list of identity patterns")
            lists[name] = tuple(value)
        if not lists["uris"] and not lists["emails"]:
            raise FormatError(f"{where} names no identity (uris or emails)")
        if any(p.strip("*?") == "" for p in lists["uris"] + lists["emails"]):
            raise FormatError(f"{where} has a pattern that matches any identity; name the "
                              "workflow (or account) that may perform the step")
        common = data.get("common_name", "*")
        if common not in ("*", ""):  # Fulcio certificates have an empty subject
            raise FormatError(f"{where}.common_name must be '*' for Sigstore identities")
        return cls(issuer, lists["uris"], lists["emails"])

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"issuer": self.issuer}
        if self.uris:
            data["uris"] = list(self.uris)
        if self.emails:
            data["emails"] = list(self.emails)
        return data

    def match(self, uris: list[str], emails: list[str]) -> str | None:
        """The certificate identity these patterns allow, if any."""
        for patterns, values in ((self.uris, uris), (self.emails, emails)):
            for value in values:
                if any(fnmatch.fnmatchcase(value, p) for p in patterns):
                    return value
        return None

    def __str__(self) -> str:
        return f"{' or '.join(self.uris + self.emails)} (issuer {self.issuer})"


def constraints_from_list(value: Any, where: str) -> list[CertConstraint]:
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list")
    return [CertConstraint.from_dict(c, f"{where}[{i}]") for i, c in enumerate(value)]
