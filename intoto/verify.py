"""Final-product verification: the in-toto v1.0 algorithm, end to end.

The order of checks is the reference implementation's (in-toto 3.1.0
``in_toto_verify``), so a supply chain refused there is refused here, for
the same reason:

1. layout signatures (by ``threshold`` of the trusted keys) and expiry;
2. parameter substitution;
3. links of every step: present (threshold), signed by an authorized
   functionary key named in the layout;
4. sublayouts, verified recursively and replaced by their summary link;
5. command alignment (a warning only, as the specification says);
6. threshold agreement: the k links of a step record the same artifacts;
7. the artifact rules of every step;
8. inspections, run in the verification directory, then their rules.

Two deliberate differences, both stricter and both documented in
docs/intoto.md: the trusted layout keys may be given with a threshold
(k of the given keys must sign, so a TUF delegation's threshold carries
over; the reference demands every given key), and a link's ``name`` must be
the step it is filed under (the reference does not look, so a functionary's
link for one step could be replayed as another's).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securesystemslib.signer import Key

from custody.intoto.artifacts import ArtifactRecorder, hash_file
from custody.intoto.errors import (
    FormatError,
    InspectionError,
    LayoutExpiredError,
    LayoutSignatureError,
    LinkNotFoundError,
    ProductBindingError,
    RecordError,
    SignatureError,
    ThresholdError,
)
from custody.intoto.metadata import Metablock, Metadata, key_from_dict, metadata_from_bytes
from custody.intoto.models import (
    BUNDLE_SUFFIX,
    SUBLAYOUT_DIRNAME,
    Inspection,
    Layout,
    Link,
    Step,
    link_filename,
)
from custody.intoto.rules import apply_rules
from custody.intoto.runner import execute

if TYPE_CHECKING:  # keyless verification imports only when a layout has keyless steps
    from custody.intoto.keyless import SigstoreTrust

log = logging.getLogger(__name__)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while links are loaded and matched.

    Links of tens of thousands of artifacts become hundreds of thousands of
    small dicts and strings, none in a reference cycle; every few hundred
    allocations the collector would walk them again, to find nothing (about 8%
    of a 60,000-artifact verification). Reference counting still frees
    everything as usual; the collector's previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class InspectionPolicy(Enum):
    """What verification does with inspections whose ``run`` is a command."""

    RUN = "run"
    """Execute them, as the reference does."""
    SKIP = "skip"
    """Do not execute them and do not check their rules (logged)."""
    REFUSE = "refuse"
    """Refuse a layout that asks the verifier to execute anything."""


class LinkSource:
    """Where verification finds link files: a directory, or files already in memory.

    The client verifies links it downloaded through TUF without writing them
    anywhere else, so verification reads links through this small interface.
    """

    def read(self, name: str) -> bytes | None:  # pragma: no cover - interface
        """The bytes of the file ``name``, or None when there is none."""
        raise NotImplementedError

    def sub(self, dirname: str) -> LinkSource:  # pragma: no cover - interface
        """The source for a sublayout's links, in the subdirectory ``dirname``."""
        raise NotImplementedError

    def names(self, step: str) -> list[str]:
        """File names of every link present for ``step``, trusted or not (for messages)."""
        return []

    def bundles(self, step: str) -> list[str]:
        """File names of the Sigstore bundles present for ``step`` (keyless evidence)."""
        return []


@dataclass(frozen=True)
class DirectoryLinks(LinkSource):
    """Links as files in a directory (``--link-dir``)."""

    path: Path

    def read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def sub(self, dirname: str) -> LinkSource:
        return DirectoryLinks(self.path / dirname)

    def names(self, step: str) -> list[str]:
        return sorted(p.name for p in self.path.glob(f"{step}.*.link"))

    def bundles(self, step: str) -> list[str]:
        return sorted(p.name for p in self.path.glob(f"{step}.*{BUNDLE_SUFFIX}"))


@dataclass(frozen=True)
class MemoryLinks(LinkSource):
    """Links held in memory, keyed by relative path (``dir/name.link``)."""

    files: Mapping[str, bytes]
    prefix: str = ""

    def read(self, name: str) -> bytes | None:
        return self.files.get(self.prefix + name)

    def sub(self, dirname: str) -> LinkSource:
        return MemoryLinks(self.files, f"{self.prefix}{dirname}/")

    def names(self, step: str, suffix: str = ".link") -> list[str]:
        start = f"{self.prefix}{step}."
        return sorted(name[len(self.prefix):] for name in self.files
                      if name.startswith(start) and "/" not in name[len(self.prefix):]
                      and name.endswith(suffix))

    def bundles(self, step: str) -> list[str]:
        return self.names(step, BUNDLE_SUFFIX)


@dataclass
class Verifier:
    """Options of a verification; call `verify` with the layout and its keys."""

    inspections: InspectionPolicy = InspectionPolicy.RUN
    inspection_timeout: float | None = 10.0
    workdir: Path = field(default_factory=Path.cwd)
    persist_inspection_links: bool = False
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    warnings: list[str] = field(default_factory=list)
    #: Collect warnings in `warnings` without logging them (for a caller that
    #: verifies many releases and reports only the refusals).
    quiet: bool = False
    #: The Sigstore trusted root that keyless functionaries' bundles are
    #: verified against; a layout with keyless steps is refused without one.
    sigstore: SigstoreTrust | None = None

    # -- public ---------------------------------------------------------
    def verify(
        self,
        layout_metadata: Metadata,
        keys: Iterable[Key],
        links: LinkSource,
        threshold: int | None = None,
        parameters: Mapping[str, str] | None = None,
        step_name: str = "",
    ) -> Link:
        """Verify the supply chain; return the summary link (first materials, last products).

        ``keys`` are the trusted layout keys and ``threshold`` how many of them
        must have signed (default: all, as the reference requires).
        """
        with collector_paused():
            return self._verify(layout_metadata, list(keys), threshold, parameters, links,
                                step_name)

    def _verify(self, layout_metadata: Metadata, keys: list[Key], threshold: int | None,
                parameters: Mapping[str, str] | None, links: LinkSource,
                step_name: str) -> Link:
        layout = self._verify_layout(layout_metadata, keys, threshold)
        if parameters is not None:
            layout = substitute_parameters(layout, parameters)
        metadata, bundles = self._load_links(layout, links)
        chain = self._authorized_links(layout, metadata, bundles, links)
        self._check_commands(layout, chain)
        reduced = self._reduce(layout, chain)
        artifacts = {name: (link.materials, link.products) for name, link in reduced.items()}
        for step in layout.steps:
            self._apply_item_rules(step, reduced[step.name], artifacts)
        inspected = self._run_inspections(layout)
        artifacts.update(
            {name: (link.materials, link.products) for name, link in inspected.items()}
        )
        for inspection in layout.inspect:
            if inspection.name in inspected:
                self._apply_item_rules(inspection, inspected[inspection.name], artifacts)
        log.info("the supply chain of the layout passed all verification")
        return summary_link(layout, reduced, step_name)

    # -- steps of the algorithm -----------------------------------------
    def _verify_layout(self, metadata: Metadata, keys: Sequence[Key],
                       threshold: int | None) -> Layout:
        if not keys:
            raise LayoutSignatureError("layout verification needs at least one trusted key")
        needed = len(keys) if threshold is None else threshold
        if not 1 <= needed <= len(keys):
            raise LayoutSignatureError(
                f"layout threshold {needed} is impossible with {len(keys)} trusted key(s)"
            )
        try:
            metadata.verify_threshold(keys, needed, "layout")
        except SignatureError as exc:
            missing = [k.keyid[:8] for k in keys if not metadata.is_signed_by(k)]
            raise LayoutSignatureError(
                f"{exc} (no valid signature by {', '.join(missing)})"
            ) from exc
        layout = metadata.payload
        if not isinstance(layout, Layout):
            raise FormatError("the layout metadata holds a link, not a layout")
        if layout.expires_at <= self.now():
            raise LayoutExpiredError(f"layout expired on {layout.expires}")
        return layout

    def _load_links(self, layout: Layout, links: LinkSource,
                    ) -> tuple[dict[str, dict[str, Metadata]], dict[str, list[str]]]:
        """Each step's links by keyid, and the Sigstore bundles of its keyless functionaries."""
        found: dict[str, dict[str, Metadata]] = {}
        found_bundles: dict[str, list[str]] = {}
        for step in layout.steps:
            per_key: dict[str, Metadata] = {}
            for keyid in step.pubkeys:
                name = link_filename(step.name, keyid)
                data = links.read(name)
                if data is not None:
                    per_key[keyid] = metadata_from_bytes(data, where=name)
            bundles = links.bundles(step.name) if step.cert_constraints else []
            if len(per_key) + len(bundles) < step.threshold:
                trusted = {link_filename(step.name, keyid) for keyid in step.pubkeys}
                ignored = [name.rsplit(".", 2)[-2] for name in links.names(step.name)
                           if name not in trusted]
                detail = (f"; ignored the link(s) by key {', '.join(ignored)}, which the layout "
                          f"does not name for step {step.name!r}") if ignored else ""
                if step.cert_constraints:
                    detail += (f"; keyless evidence is a Sigstore bundle named "
                               f"{step.name}.<name>{BUNDLE_SUFFIX}")
                raise LinkNotFoundError(
                    f"step {step.name!r} requires {step.threshold} link(s) by its "
                    f"functionaries, found {len(per_key) + len(bundles)}{detail}"
                )
            found[step.name] = per_key
            found_bundles[step.name] = bundles
        return found, found_bundles

    def _authorized_links(self, layout: Layout, found: dict[str, dict[str, Metadata]],
                          bundles: dict[str, list[str]],
                          links: LinkSource) -> dict[str, dict[str, Link]]:
        chain: dict[str, dict[str, Link]] = {}
        for step in layout.steps:
            good: dict[str, Link] = {}
            problems: list[str] = []
            for keyid, metadata in found[step.name].items():
                key_dict = layout.keys.get(keyid)
                if key_dict is None:
                    problems.append(f"{keyid[:8]} is not among the layout's keys")
                    continue
                key = key_from_dict(keyid, key_dict)
                if not metadata.is_signed_by(key):
                    problems.append(f"{link_filename(step.name, keyid)} is not validly signed "
                                    f"by authorized functionary {keyid[:8]}")
                    continue
                try:
                    payload = metadata.evidence(step.name)
                except FormatError as exc:
                    problems.append(f"{link_filename(step.name, keyid)}: {exc}")
                    continue
                if isinstance(payload, Layout):
                    payload = self._sublayout(step, keyid, key, metadata, links)
                elif payload.name != step.name:
                    problems.append(f"{link_filename(step.name, keyid)} records step "
                                    f"{payload.name!r}, not {step.name!r}")
                    continue
                good[keyid] = payload
            if step.cert_constraints:
                good.update(self._keyless(step, bundles[step.name], links, problems))
            if len(good) < step.threshold:
                detail = f" ({'; '.join(problems)})" if problems else ""
                raise ThresholdError(
                    f"step {step.name!r} requires {step.threshold} link(s) validly signed by "
                    f"different authorized functionaries, found {len(good)}{detail}"
                )
            chain[step.name] = good
        return chain

    def _keyless(self, step: Step, bundles: list[str], links: LinkSource,
                 problems: list[str]) -> dict[str, Link]:
        """Evidence of the step's keyless functionaries, one per distinct identity.

        Keyed by bundle file name (messages name the file); two bundles by
        one identity count once, so a threshold needs different identities.
        """
        if not bundles:
            return {}
        if self.sigstore is None:
            problems.append("the layout names keyless functionaries but the verifier was "
                            "given no Sigstore trusted root")
            return {}
        good: dict[str, Link] = {}
        identities: set[str] = set()
        for name in bundles:
            data = links.read(name)
            if data is None:
                continue
            try:
                evidence = self.sigstore.verify(data, name, step.name, step.cert_constraints)
            except (SignatureError, FormatError) as exc:
                problems.append(str(exc))
                continue
            if evidence.link.name != step.name:
                problems.append(f"{name} records step {evidence.link.name!r}, not "
                                f"{step.name!r}")
            elif evidence.identity in identities:
                problems.append(f"{name} is by {evidence.identity} again (counted once)")
            else:
                identities.add(evidence.identity)
                good[name] = evidence.link
                log.info("step %r: %s verified, by %s", step.name, name, evidence.identity)
        return good

    def _sublayout(self, step: Step, keyid: str, key: Key, metadata: Metadata,
                   links: LinkSource) -> Link:
        log.info("verifying sublayout for step %r signed by %s", step.name, keyid[:8])
        sub = links.sub(SUBLAYOUT_DIRNAME.format(step=step.name, keyid=keyid))
        return self.verify(metadata, [key], sub, step_name=step.name)

    def _check_commands(self, layout: Layout, chain: dict[str, dict[str, Link]]) -> None:
        for step in layout.steps:
            for keyid, link in chain[step.name].items():
                if link.command != step.expected_command:
                    message = (f"{_evidence_file(step, keyid)} ran {link.command!r}, the "
                               f"layout expects {step.expected_command!r}")
                    self.warnings.append(message)
                    if not self.quiet:
                        log.warning("%s", message)

    def _reduce(self, layout: Layout, chain: dict[str, dict[str, Link]]) -> dict[str, Link]:
        reduced: dict[str, Link] = {}
        for step in layout.steps:
            by_key = chain[step.name]
            first_keyid, first = next(iter(by_key.items()))
            if step.threshold > 1:
                for keyid, link in by_key.items():
                    if link.materials != first.materials or link.products != first.products:
                        raise ThresholdError(
                            f"step {step.name!r}: links {_evidence_file(step, first_keyid)}"
                            f" and {_evidence_file(step, keyid)} record different "
                            f"artifacts{_first_difference(first, link)}"
                        )
            reduced[step.name] = first
        return reduced

    def _apply_item_rules(self, item: Step | Inspection, link: Link,
                          artifacts: Mapping[str, tuple[Any, Any]]) -> None:
        kind = "step" if isinstance(item, Step) else "inspection"
        apply_rules(f"{kind} {item.name}", "materials", item.expected_materials,
                    link.materials, link.products, artifacts)
        apply_rules(f"{kind} {item.name}", "products", item.expected_products,
                    link.materials, link.products, artifacts)

    def _run_inspections(self, layout: Layout) -> dict[str, Link]:
        results: dict[str, Link] = {}
        for inspection in layout.inspect:
            if inspection.run and self.inspections is InspectionPolicy.REFUSE:
                raise InspectionError(
                    f"inspection {inspection.name!r} would run {inspection.run!r}, and this "
                    "verifier's policy does not allow running commands"
                )
            if inspection.run and self.inspections is InspectionPolicy.SKIP:
                message = f"inspection {inspection.name!r} skipped by policy"
                self.warnings.append(message)
                if not self.quiet:
                    log.warning("%s", message)
                continue
            results[inspection.name] = self._inspect(inspection)
        return results

    def _inspect(self, inspection: Inspection) -> Link:
        recorder = ArtifactRecorder(base_path=str(self.workdir), follow_symlink_dirs=True)
        materials = recorder.record(["."])
        try:
            byproducts = execute(inspection.run, False, self.inspection_timeout,
                                 cwd=str(self.workdir))
        except RecordError as exc:
            raise InspectionError(f"inspection {inspection.name!r} failed: {exc}") from exc
        code = byproducts.get("return-value", 0)
        if code != 0:
            raise InspectionError(
                f"inspection {inspection.name!r} command {' '.join(inspection.run)!r} "
                f"exited with {code}"
            )
        link = Link(name=inspection.name, materials=materials, products=recorder.record(["."]),
                    byproducts=byproducts, command=list(inspection.run))
        if self.persist_inspection_links:
            Metablock.new(link).dump(self.workdir / f"{inspection.name}.link")
        return link


def _evidence_file(step: Step, who: str) -> str:
    """The file a step's evidence came from: a key's link, or a keyless bundle."""
    return who if who.endswith(BUNDLE_SUFFIX) else link_filename(step.name, who)


def _first_difference(a: Link, b: Link) -> str:
    for side in ("materials", "products"):
        x, y = getattr(a, side), getattr(b, side)
        for path in sorted(set(x) | set(y)):
            if x.get(path) != y.get(path):
                return f" (first difference: {side} {path!r})"
    return ""


def substitute_parameters(layout: Layout, parameters: Mapping[str, str]) -> Layout:
    """A copy of ``layout`` with ``{name}`` placeholders filled, as the reference does.

    Placeholders may stand in artifact rules, ``expected_command`` and
    inspections' ``run``; a placeholder without a value is a FormatError.
    """

    def fill(words: list[str]) -> list[str]:
        try:
            return [w.format(**parameters) for w in words]
        except (KeyError, IndexError, ValueError) as exc:
            raise FormatError(f"layout parameter {exc} has no value in {words!r}") from exc

    def rules(items: list[list[str]]) -> list[list[str]]:
        return [fill(r) for r in items]

    return replace(
        layout,
        steps=[
            replace(s, expected_materials=rules(s.expected_materials),
                    expected_products=rules(s.expected_products),
                    expected_command=fill(s.expected_command))
            for s in layout.steps
        ],
        inspect=[
            replace(i, expected_materials=rules(i.expected_materials),
                    expected_products=rules(i.expected_products), run=fill(i.run))
            for i in layout.inspect
        ],
    )


def summary_link(layout: Layout, reduced: Mapping[str, Link], name: str) -> Link:
    """The link a (sub)layout stands for: first step's materials, last step's products."""
    if not layout.steps:
        return Link(name=name)
    first, last = reduced[layout.steps[0].name], reduced[layout.steps[-1].name]
    return Link(name=name, materials=first.materials, products=last.products,
                byproducts=last.byproducts, command=last.command)


def bind_product(summary: Link, path: Path, name: str | None = None,
                 sha256: str | None = None) -> str:
    """Prove that the file at ``path`` is a product of the final step, under ``name``.

    Returns the file's SHA-256. Raises ProductBindingError when the final step
    recorded no product by that name or recorded a different hash, so in-toto
    is proven about the delivered file itself and not just about some file.
    ``sha256`` is the file's digest when the caller has already verified it
    (TUF has, for a downloaded target), saving a pass over a large file.
    """
    name = name or path.name
    recorded = summary.products.get(name)
    if recorded is None:
        raise ProductBindingError(
            f"delivered file {name!r} is not a product of the layout's final step "
            f"{summary.name or ''}".rstrip()
        )
    digest = sha256 or hash_file(str(path))
    expected = recorded.get("sha256")
    if expected is None or expected != digest:
        raise ProductBindingError(
            f"delivered file {name!r} has sha256 {digest[:16]}..., the final step recorded "
            f"{(expected or 'no sha256')[:16]}..."
        )
    return digest
