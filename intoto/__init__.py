"""in-toto for custody: models, artifact rules, recording and verification.

Byte-compatible with the in-toto specification v1.0 and the reference
implementation (in-toto 3.1.0), written from the specification; this package
knows nothing of TUF or HTTP, and takes keys and signers as values.

Names are imported on first use (PEP 562), so a program that needs only one
module (the client's no-op update poll, say) does not pay for all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IntotoError": "intoto.errors",
    "VerificationError": "intoto.errors",
    "Envelope": "intoto.metadata",
    "Metablock": "intoto.metadata",
    "Metadata": "intoto.metadata",
    "load_metadata": "intoto.metadata",
    "metadata_from_bytes": "intoto.metadata",
    "Inspection": "intoto.models",
    "Layout": "intoto.models",
    "Link": "intoto.models",
    "Step": "intoto.models",
    "link_filename": "intoto.models",
    "DirectoryLinks": "intoto.verify",
    "InspectionPolicy": "intoto.verify",
    "MemoryLinks": "intoto.verify",
    "Verifier": "intoto.verify",
    "bind_product": "intoto.verify",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'intoto' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
