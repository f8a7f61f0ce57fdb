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
    "IntotoError": "custody.intoto.errors",
    "VerificationError": "custody.intoto.errors",
    "Envelope": "custody.intoto.metadata",
    "Metablock": "custody.intoto.metadata",
    "Metadata": "custody.intoto.metadata",
    "load_metadata": "custody.intoto.metadata",
    "metadata_from_bytes": "custody.intoto.metadata",
    "Inspection": "custody.intoto.models",
    "Layout": "custody.intoto.models",
    "Link": "custody.intoto.models",
    "Step": "custody.intoto.models",
    "link_filename": "custody.intoto.models",
    "DirectoryLinks": "custody.intoto.verify",
    "InspectionPolicy": "custody.intoto.verify",
    "MemoryLinks": "custody.intoto.verify",
    "Verifier": "custody.intoto.verify",
    "bind_product": "custody.intoto.verify",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'intoto' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
