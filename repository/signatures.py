"""Who must sign a role, and whether they did: the counting every ceremony shows.

A role's metadata is signed enough when a threshold of the keys its delegator
trusts for it signed it; a new root needs that from both the new root and the
previous one (TUF 5.3.4). `Expectation` is one such delegator's demand with
what is met of it, in the words ``status``, ``pending show``, the pending
error, ``sign`` and ``import`` all use. Pure functions of metadata: no disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import Metadata, Root, Targets


@dataclass(frozen=True)
class Expectation:
    """The keys one delegator trusts for a role, its threshold, and which have signed."""

    by: str  # the delegator: "new root", "previous root", "targets", "releases", "draft root"
    role: str
    keyids: list[str]
    threshold: int
    signed: list[str]

    @property
    def met(self) -> bool:
        return len(self.signed) >= self.threshold

    def line(self) -> str:
        whose = f"{self.by}'s keys" if self.role == Root.type else \
            f"keys {self.by} trusts for {self.role}"
        return (f"{len(self.signed)}/{self.threshold} by the {whose} "
                f"({', '.join(k[:8] for k in self.keyids)})")


def expectation(by: str, delegator: Root | Targets, role: str, md: Metadata) -> Expectation:
    """What ``delegator`` (named ``by``) demands of ``md`` as ``role``, and what is met."""
    result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    return Expectation(by, role, sorted(result.signed | result.unsigned), result.threshold,
                       sorted(result.signed))


def signature_valid(key: Key, signature: Signature, payload: bytes) -> bool:
    """Whether ``signature`` by ``key`` verifies over ``payload`` (any failure: no)."""
    try:
        key.verify_signature(signature, payload)
    except Exception:  # any failure means "not signed by it"
        return False
    return True


def signed_by(md: Metadata, key: Key) -> bool:
    """Whether ``md`` carries a valid signature by ``key``."""
    signature = md.signatures.get(key.keyid)
    return signature is not None and signature_valid(key, signature, md.signed_bytes)
