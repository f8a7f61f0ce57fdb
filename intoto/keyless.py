"""Keyless functionaries: a step performed by a CI identity that Sigstore certified.

A layout may authorize, instead of (or beside) functionary keys, identities
that Sigstore's certificate authority (Fulcio) vouched for: the OIDC issuer
plus the certificate's subject alternative name, such as a GitHub Actions
workflow ``https://github.com/ORG/REPO/.github/workflows/release.yml@refs/tags/v1``.
The evidence is a Sigstore bundle, verified entirely by the ``sigstore``
library (certificate chain to the trusted root, transparency log inclusion
and signed time, signature), offline, against a trusted root the caller
supplies: custody's client takes it from its own TUF repository, signed by
the owners' offline keys.

In the layout JSON a step lists them under ``cert_constraints``, in-toto-golang's
field for certificate-based functionaries, each with its ``uris`` (and/or
``emails``) as patterns and the ``issuer`` custody adds::

    "cert_constraints": [{"issuer": "https://token.actions.githubusercontent.com",
                          "uris": ["https://github.com/ORG/REPO/.github/workflows/release.yml@refs/tags/*"]}]

Patterns are `fnmatch` patterns matched against the whole SAN (``*`` crosses
``/``); a pattern without wildcards is an exact identity.

A bundle file for step S is named ``S.<name>.sigstore.json``. Its evidence is:

- for a DSSE bundle: the in-toto Statement it carries (see `custody.intoto.attestation`);
- for a message signature (what ``sigstore sign`` and PyPI's trusted
  publishing make over a file): a link whose one product is ``<name>`` with the
  signed SHA-256, so ``release.rfc8785-0.1.2-py3-none-any.whl.sigstore.json``
  says the identity released exactly that wheel.

Thresholds count distinct identities: two bundles by one workflow are one.

The sigstore library is an extra (``custody[keyless]``): a host whose layouts
name only keys never imports it, and need not install it. Where a layout
needs it and it is absent, verification stops with `KeylessUnavailableError`
saying which extra to install.
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody.intoto.attestation import Statement
from custody.intoto.canonical import loads
from custody.intoto.constraints import CertConstraint
from custody.intoto.errors import FormatError, KeylessUnavailableError, SignatureError
from custody.intoto.models import BUNDLE_SUFFIX, Link

#: What installs keyless verification on a host that installed the client alone.
INSTALL_KEYLESS = "pip install 'custody[keyless]'"


@contextlib.contextmanager
def _sigstore_library() -> Iterator[None]:
    """Around imports of the sigstore stack: absent, one sentence naming the extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise KeylessUnavailableError(
            f"the layout names keyless functionaries, whose Sigstore bundles need the "
            f"sigstore library ({exc.name} is not installed): {INSTALL_KEYLESS}") from exc


class _ConstraintPolicy:
    """A sigstore verification policy: the certificate satisfies one of the constraints.

    The issuer is checked by sigstore's own extension policies (the v1 and
    v2 Fulcio OIDs); the identity by matching the certificate's URI and
    e-mail SANs against the patterns. Which identity matched is kept, for
    counting distinct functionaries.
    """

    def __init__(self, constraints: list[CertConstraint]) -> None:
        self.constraints = constraints
        self.identity: str | None = None

    def verify(self, cert: Any) -> None:
        from cryptography.x509 import (
            ExtensionNotFound,
            RFC822Name,
            SubjectAlternativeName,
            UniformResourceIdentifier,
        )
        from sigstore.errors import VerificationError
        from sigstore.verify import policy

        try:
            san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
        except ExtensionNotFound as exc:
            raise VerificationError("the certificate names no identity") from exc
        uris = san.get_values_for_type(UniformResourceIdentifier)
        emails = san.get_values_for_type(RFC822Name)
        wrong_issuer = None
        for constraint in self.constraints:
            identity = constraint.match(uris, emails)
            if identity is None:
                continue
            try:
                policy.AnyOf([policy.OIDCIssuerV2(constraint.issuer),
                              policy.OIDCIssuer(constraint.issuer)]).verify(cert)
            except VerificationError:
                wrong_issuer = wrong_issuer or (identity, constraint.issuer)
                continue
            self.identity = identity
            return
        if wrong_issuer is not None:
            raise VerificationError(f"the certificate's identity {wrong_issuer[0]} is one the "
                                    f"layout names, but its OIDC issuer is not "
                                    f"{wrong_issuer[1]}")
        raise VerificationError(
            f"the certificate's identity {', '.join(uris + emails) or '(none)'} is not one "
            f"the layout names ({'; '.join(map(str, self.constraints))})")


@dataclass
class Evidence:
    """What one verified bundle proves: who (identity) did what (a link)."""

    identity: str
    link: Link


@dataclass
class SigstoreTrust:
    """A Sigstore trusted root (``trusted_root.json``), and bundle verification against it.

    Everything is offline: no Sigstore service, no Sigstore TUF repository
    is contacted; the root is what the caller was given (custody's client:
    a target of its own repository, signed by the owners' offline keys).
    """

    trusted_root: bytes
    #: When the owners stop vouching for this root (custody's repository
    #: records it beside the root, as a layout's ``expires``): sigstore-python
    #: accepts Fulcio and Rekor keys whatever their ``validFor`` says once they
    #: were valid, so a root never ages out on its own.
    expires: datetime | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _verifier: Any = field(default=None, repr=False)

    def verifier(self) -> Any:
        if self._verifier is None:
            with _sigstore_library():
                from sigstore.models import TrustedRoot
                from sigstore.verify import Verifier

            with tempfile.TemporaryDirectory(prefix="custody-sigstore-") as tmp:
                path = Path(tmp, "trusted_root.json")
                path.write_bytes(self.trusted_root)
                try:
                    root = TrustedRoot.from_file(str(path))
                except Exception as exc:  # pydantic or protobuf validation, library-specific
                    raise FormatError(f"the Sigstore trusted root is not valid: "
                                      f"{_first_line(exc)}") from exc
            self._verifier = Verifier(trusted_root=root)
        return self._verifier

    def verify(self, data: bytes, name: str, step: str,
               constraints: list[CertConstraint]) -> Evidence:
        """Verify the bundle file ``name`` (``<step>.<x>.sigstore.json``) for ``step``.

        Raises SignatureError with one sentence when the bundle does not
        verify, its identity is not allowed, or the library cannot verify
        its kind; FormatError when its statement is not step evidence;
        KeylessUnavailableError when the sigstore library is not installed.
        """
        with _sigstore_library():
            from sigstore.errors import Error as SigstoreError
            from sigstore.hashes import Hashed
            from sigstore.models import Bundle
            from sigstore_models.common.v1 import HashAlgorithm

        if self.expires is not None and self.now() >= self.expires:
            raise SignatureError(f"{name} was not checked: the Sigstore trusted root expired on "
                                 f"{self.expires:%Y-%m-%d %H:%M} UTC")
        policy = _ConstraintPolicy(constraints)
        try:
            raw = loads(data)
            bundle = Bundle.from_json(data)
        except (ValueError, FormatError) as exc:
            raise FormatError(f"{name} is not a Sigstore bundle: {exc}") from exc
        except Exception as exc:  # the library's own validation errors
            raise SignatureError(f"{name} is a bundle the sigstore library cannot verify: "
                                 f"{_first_line(exc)}") from exc
        try:
            if isinstance(raw, dict) and "dsseEnvelope" in raw:
                payload_type, payload = self.verifier().verify_dsse(bundle, policy)
                if payload_type != "application/vnd.in-toto+json":
                    raise FormatError(f"{name} carries {payload_type!r}, not an in-toto "
                                      "statement")
                statement = Statement.from_dict(loads(payload), f"{name} statement")
                link = statement.evidence(step, f"{name} statement")
            else:
                product, digest = _message_digest(raw, name, step)
                hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
                self.verifier().verify_artifact(hashed, bundle, policy)
                link = Link(name=step, products={product: {"sha256": digest.hex()}})
        except FormatError:
            raise
        except SigstoreError as exc:
            # The library says "only supported for ..." of log entry kinds it lacks
            # (npm's intoto 0.0.2 entries, sigstore-python issue 1384).
            if "supported" in str(exc):
                raise SignatureError(f"{name} is not supported by the verifier (sigstore "
                                     f"library): {_first_line(exc)}") from exc
            raise SignatureError(f"{name} does not verify: {_first_line(exc)}") from exc
        except (ValueError, NotImplementedError) as exc:  # kinds the library does not support
            raise SignatureError(f"{name} is not supported by the verifier (sigstore "
                                 f"library): {_first_line(exc)}") from exc
        assert policy.identity is not None
        return Evidence(policy.identity, link)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _message_digest(raw: Mapping[str, Any], name: str, step: str) -> tuple[str, bytes]:
    """The artifact a message-signature bundle names (by its file name) and its SHA-256."""
    product = name[len(step) + 1:-len(BUNDLE_SUFFIX)] if name.endswith(BUNDLE_SUFFIX) else ""
    if not product:
        raise FormatError(f"{name}: a message signature's bundle is named "
                          f"{step}.<artifact>{BUNDLE_SUFFIX}")
    try:
        digest = raw["messageSignature"]["messageDigest"]
        algorithm, value = digest["algorithm"], digest["digest"]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{name} has neither a DSSE envelope nor a message digest") from exc
    if algorithm != "SHA2_256":
        raise FormatError(f"{name} signs a {algorithm!r} digest; custody verifies SHA2_256 "
                          "message signatures")
    try:
        return product, base64.b64decode(value, validate=True)
    except (TypeError, ValueError) as exc:  # binascii.Error, or not a string
        raise FormatError(f"{name}: its message digest is not base64") from exc

