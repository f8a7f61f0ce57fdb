"""in-toto for custody: models, artifact rules, recording and verification.

Byte-compatible with the in-toto specification v1.0 and the reference
implementation (in-toto 3.1.0), written from the specification; this package
knows nothing of TUF or HTTP, and takes keys and signers as values.
"""

from intoto.errors import IntotoError, VerificationError
from intoto.metadata import Envelope, Metablock, Metadata, load_metadata, metadata_from_bytes
from intoto.models import Inspection, Layout, Link, Step, link_filename
from intoto.verify import (
    DirectoryLinks,
    InspectionPolicy,
    MemoryLinks,
    Verifier,
    bind_product,
)

__all__ = [
    "DirectoryLinks",
    "Envelope",
    "Inspection",
    "InspectionPolicy",
    "IntotoError",
    "Layout",
    "Link",
    "MemoryLinks",
    "Metablock",
    "Metadata",
    "Step",
    "VerificationError",
    "Verifier",
    "bind_product",
    "link_filename",
    "load_metadata",
    "metadata_from_bytes",
]
