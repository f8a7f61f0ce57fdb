"""in-toto attestations: a Statement v1 whose predicate is step evidence.

The in-toto attestation framework (github.com/in-toto/attestation, spec
v1) wraps evidence in a *Statement*: the ``subject`` lists the artifacts the
statement is about (resource descriptors: ``name`` plus ``digest``), and a
typed ``predicate`` says what happened to them. Release pipelines produce
statements today (GitHub artifact attestations, npm provenance, PEP 740),
usually in a DSSE envelope with payload type ``application/vnd.in-toto+json``.

A statement stands in for a link when its predicate is one of:

- the link predicate v0.3 (``https://in-toto.io/attestation/link/v0.3``):
  ``name``, ``command``, ``materials`` (resource descriptors), ``byproducts``
  and ``environment``, the fields of a classic link; products are the
  statement's subjects;
- SLSA provenance v1 (``https://slsa.dev/provenance/v1``): products are the
  subjects, materials the build's ``resolvedDependencies``. Provenance names
  no in-toto step, so its evidence takes the name of the step it is filed
  under (the file name, as for any link, and the functionary authorized for
  that step, bind it).

Artifact rules then apply to the evidence unchanged. Any other predicate type
is refused with a sentence that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from custody.intoto.errors import FormatError
from custody.intoto.models import ArtifactHashes, Link, check_artifacts

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
LINK_V03 = "https://in-toto.io/attestation/link/v0.3"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
EVIDENCE_PREDICATES = (LINK_V03, SLSA_PROVENANCE_V1)


def _descriptors(value: Any, where: str, names: tuple[str, ...] = ("name",)) -> ArtifactHashes:
    """``[{"name": path, "digest": {alg: hex}}, ...]`` as ``{path: {alg: hex}}``.

    ``names`` are the fields that may name the artifact, in order of
    preference (SLSA dependencies often have only a ``uri``).
    """
    if not isinstance(value, list):
        raise FormatError(f"{where} must be a list of resource descriptors")
    out: dict[str, Any] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise FormatError(f"{where}[{i}] must be a resource descriptor object")
        name = next((item[n] for n in names if isinstance(item.get(n), str) and item[n]), None)
        if name is None:
            raise FormatError(f"{where}[{i}] has no {' or '.join(names)}")
        digest = item.get("digest")
        if not isinstance(digest, dict) or not digest:
            raise FormatError(f"{where}[{i}] ({name}) has no digest")
        if name in out:
            raise FormatError(f"{where} lists {name!r} twice")
        out[name] = digest
    return check_artifacts(out, where)


def descriptors_from_artifacts(artifacts: ArtifactHashes) -> list[dict[str, Any]]:
    """``{path: {alg: hex}}`` as resource descriptors, sorted by path."""
    return [{"name": path, "digest": dict(artifacts[path])} for path in sorted(artifacts)]


@dataclass
class Statement:
    """An in-toto Statement v1: subjects, a predicate type and the predicate."""

    subject: ArtifactHashes
    predicate_type: str
    predicate: dict[str, Any] = field(default_factory=dict)

    TYPE = STATEMENT_V1

    @classmethod
    def from_dict(cls, data: Any, where: str = "statement") -> Statement:
        if not isinstance(data, dict):
            raise FormatError(f"{where} must be a JSON object")
        if data.get("_type") != STATEMENT_V1:
            raise FormatError(f"{where}._type must be {STATEMENT_V1!r}, got "
                              f"{data.get('_type')!r}")
        subject = _descriptors(data.get("subject"), f"{where}.subject")
        if not subject:
            raise FormatError(f"{where}.subject is empty")
        predicate_type = data.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise FormatError(f"{where}.predicateType is missing")
        predicate = data.get("predicate", {})
        if not isinstance(predicate, dict):
            raise FormatError(f"{where}.predicate must be a JSON object")
        return cls(subject, predicate_type, predicate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": self.TYPE,
            "subject": descriptors_from_artifacts(self.subject),
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    @classmethod
    def from_link(cls, link: Link) -> Statement:
        """The link attestation (predicate v0.3) recording what ``link`` records.

        The subjects are the link's products. A statement must have a subject,
        so a step that produced nothing cannot be attested this way (raises
        FormatError); it is recorded as a classic link instead.
        """
        if not link.products:
            raise FormatError(f"step {link.name!r} recorded no products, and an attestation's "
                              "subjects are its products; record it without --attest")
        predicate: dict[str, Any] = {
            "name": link.name,
            "command": link.command,
            "materials": descriptors_from_artifacts(link.materials),
        }
        if link.byproducts:
            predicate["byproducts"] = link.byproducts
        if link.environment:
            predicate["environment"] = link.environment
        return cls(link.products, LINK_V03, predicate)

    def evidence(self, step: str, where: str = "statement") -> Link:
        """The link this statement is evidence of, for the step it is filed under."""
        pred, here = self.predicate, f"{where}.predicate"
        if self.predicate_type == LINK_V03:
            name = pred.get("name")
            if not isinstance(name, str):
                raise FormatError(f"{here}.name is missing")
            command = pred.get("command", [])
            if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
                raise FormatError(f"{here}.command must be a list of strings")
            byproducts, environment = pred.get("byproducts", {}), pred.get("environment", {})
            if not isinstance(byproducts, dict) or not isinstance(environment, dict):
                raise FormatError(f"{here}.byproducts and environment must be objects")
            return Link(name=name, products=self.subject, command=command,
                        materials=_descriptors(pred.get("materials", []), f"{here}.materials"),
                        byproducts=byproducts, environment=environment)
        if self.predicate_type == SLSA_PROVENANCE_V1:
            build = pred.get("buildDefinition")
            if not isinstance(build, dict):
                raise FormatError(f"{here}.buildDefinition is missing")
            materials = _descriptors(build.get("resolvedDependencies", []),
                                     f"{here}.buildDefinition.resolvedDependencies",
                                     names=("name", "uri"))
            return Link(name=step, materials=materials, products=self.subject,
                        environment={"buildType": build.get("buildType")})
        raise FormatError(
            f"{where} has predicate type {self.predicate_type!r}; step evidence must be an "
            f"in-toto link ({LINK_V03}) or SLSA provenance v1 ({SLSA_PROVENANCE_V1})")


def is_statement(data: Any) -> bool:
    """Whether a parsed payload is an in-toto Statement (of any version)."""
    return isinstance(data, dict) and str(data.get("_type", "")).startswith(
        "https://in-toto.io/Statement/")
