"""Keys: generate, store encrypted, load signers and public keys, compute key ids.

Everything here produces or consumes securesystemslib values (`Key`,
`Signer`), so in-toto and TUF code above it never sees a file format.
"""

from custody.keys_tooling.keys import (
    KEY_TYPES,
    generate_key,
    load_public_key,
    load_signer,
    public_key_pem,
    write_key_pair,
)

__all__ = [
    "KEY_TYPES",
    "generate_key",
    "load_public_key",
    "load_signer",
    "public_key_pem",
    "write_key_pair",
]
