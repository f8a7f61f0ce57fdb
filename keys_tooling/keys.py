"""Generate, store and load keys as securesystemslib signers and keys.

Private keys are PKCS#8 PEM, encrypted unless the caller asks otherwise;
public keys are SubjectPublicKeyInfo PEM, the format the in-toto reference
tools read, so a key made here works with ``in-toto-run --signing-key`` and
``in-toto-verify --verification-keys`` unchanged. Key ids are always what
securesystemslib computes, never our own.

Wherever a private key is named, a securesystemslib signer URI (``file2:``,
``awskms:``, ``gcpkms:``, ``hsm:``, ...) is accepted too, so keys kept in a KMS
or an HSM work without code changes here.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey
from securesystemslib.signer._utils import compute_default_keyid

from custody.keys_tooling.errors import KeyFileError, KeyMismatchError, PasswordError

KEY_TYPES = {
    "ed25519": "ed25519",
    "ecdsa": "ecdsa-sha2-nistp256",
    "ecdsa-p256": "ecdsa-sha2-nistp256",
    "ecdsa-p384": "ecdsa-sha2-nistp384",
    "rsa": "rsassa-pss-sha256",
}
"""Key types ``generate_key`` accepts, and the signature scheme each gets."""

PASSWORD_ENV = "CUSTODY_KEY_PASSWORD"
"""The environment variable every custody command reads an encrypted key's password from."""


def password_from_env(name: str = PASSWORD_ENV) -> bytes | None:
    """The password in the environment variable ``name``, if it is set and not empty."""
    value = os.environ.get(name)
    return value.encode() if value else None


def password_variable(path: str | os.PathLike[str]) -> str:
    """The per-key variable for a key file: ``CUSTODY_KEY_PASSWORD_ROOT`` for ``keys/root``."""
    stem = Path(path).name.split(".")[0]
    return f"{PASSWORD_ENV}_{re.sub(r'[^A-Za-z0-9]', '_', stem).upper()}"


def key_password(path: str | os.PathLike[str], new: bool = False,
                 interactive: bool | None = None) -> bytes | None:
    """The password for the key file ``path``, per key: an operator rarely has one password.

    In order: the key's own variable (`password_variable`), then
    ``CUSTODY_KEY_PASSWORD``, then a prompt when standard input is a terminal
    (twice for a ``new`` key). ``None`` when none is to be had.
    """
    for name in (password_variable(path), PASSWORD_ENV):
        value = password_from_env(name)
        if value:
            return value
    if not (sys.stdin.isatty() if interactive is None else interactive):
        return None
    import getpass

    what = f"the new key {path}" if new else f"{path}"
    first = getpass.getpass(f"Password for {what}: ")
    if new and first and getpass.getpass(f"Repeat the password for {what}: ") != first:
        raise PasswordError(f"the passwords for {path} do not match")
    return first.encode() or None


def open_signer(spec: str, public_key: Key | None = None) -> Signer:
    """A signer for a key file or URI, asking for a password only if the key is encrypted.

    An unencrypted key loads whatever the environment says; an encrypted one
    takes `key_password`. This is what every custody command line uses.
    """
    if is_signer_uri(spec) and not spec.startswith("file2:"):
        return load_signer(spec, None, public_key)
    path = spec[len("file2:"):] if spec.startswith("file2:") else spec
    try:
        encrypted = b"ENCRYPTED" in Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from exc
    password = key_password(path) if encrypted else None
    if encrypted and password is None:
        raise PasswordError(f"private key {path} is encrypted: set {password_variable(path)} "
                            f"(or {PASSWORD_ENV}), or run on a terminal to be asked")
    return load_signer(spec, password, public_key)


_URI = re.compile(r"^[a-z][a-z0-9+.-]*:(?!//?[A-Za-z]:)")


def is_signer_uri(spec: str) -> bool:
    """Whether ``spec`` is a securesystemslib private key URI rather than a path."""
    return bool(_URI.match(spec)) and not Path(spec).exists()


def generate_key(key_type: str = "ed25519", rsa_bits: int = 3072) -> CryptoSigner:
    """A new key pair as a signer whose ``public_key`` carries the securesystemslib key id."""
    if key_type not in KEY_TYPES:
        raise KeyFileError(
            f"unknown key type {key_type!r}; choose one of {', '.join(sorted(KEY_TYPES))}"
        )
    scheme = KEY_TYPES[key_type]
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type == "rsa":
        return CryptoSigner.generate_rsa(scheme=scheme, size=rsa_bits)
    return CryptoSigner.generate_ecdsa(scheme=scheme)


def private_key_pem(signer: CryptoSigner, password: bytes | None) -> bytes:
    """PKCS#8 PEM of ``signer``'s private key, encrypted when a password is given."""
    if not password:
        return signer.private_bytes
    private = serialization.load_pem_private_key(signer.private_bytes, None)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def public_key_pem(key: Key) -> bytes:
    """SubjectPublicKeyInfo PEM of a securesystemslib key."""
    if not isinstance(key, SSlibKey):
        raise KeyFileError(f"key {key.keyid[:8]} has no PEM form ({type(key).__name__})")
    if key.keytype == "ed25519":
        crypto_key = ed25519.Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(key.keyval["public"])
        )
        return crypto_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    # RSA and ECDSA keys already hold SubjectPublicKeyInfo PEM in keyval.
    return key.keyval["public"].encode("utf-8")


def write_key_pair(signer: CryptoSigner, path: str | os.PathLike[str],
                   password: bytes | None) -> tuple[Path, Path]:
    """Write ``path`` (private, mode 0600) and ``path.pub``; refuse to overwrite either."""
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    for target in (private, public):
        if target.exists():
            raise KeyFileError(f"{target} already exists; refusing to overwrite a key")
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(signer, password))
    public.write_bytes(public_key_pem(signer.public_key))
    return private, public


def _scheme_for(crypto_key: Any) -> str | None:
    """The scheme we give a key type when loading a bare PEM (matches generation)."""
    if isinstance(crypto_key, rsa.RSAPublicKey):
        return KEY_TYPES["rsa"]
    if isinstance(crypto_key, ec.EllipticCurvePublicKey):
        return f"ecdsa-sha2-nistp{crypto_key.curve.key_size}"
    if isinstance(crypto_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return None


def key_from_crypto(crypto_public_key: Any) -> SSlibKey:
    """A securesystemslib key (and key id) for a pyca/cryptography public key."""
    try:
        return SSlibKey.from_crypto(crypto_public_key, scheme=_scheme_for(crypto_public_key))
    except ValueError as exc:
        raise KeyFileError(f"unsupported public key type: {exc}") from exc


def load_private_pem(path: str | os.PathLike[str], password: bytes | None = None) -> CryptoSigner:
    """A signer for a PKCS#8 (or traditional) PEM private key, encrypted or not."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from exc
    if b"ENCRYPTED" not in data:
        password = None  # an unencrypted key loads whatever password the caller had
    try:
        private = serialization.load_pem_private_key(data, password or None)
    except TypeError as exc:
        raise PasswordError(f"private key {path} is encrypted and no password was given") \
            from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:
            raise PasswordError(f"wrong password for private key {path}") from exc
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    return CryptoSigner(private, key_from_crypto(private.public_key()))


def load_signer(spec: str, password: bytes | None = None,
                public_key: Key | None = None) -> Signer:
    """A signer for a PEM path or a securesystemslib private key URI.

    A URI signer needs its public key (securesystemslib's contract), except
    ``file2:`` whose public half is derived from the private file itself.
    When ``public_key`` is given for a PEM path, the two must match.
    """
    if is_signer_uri(spec):
        if spec.startswith("file2:") and public_key is None:
            return load_private_pem(spec[len("file2:"):], password)
        if public_key is None:
            raise KeyFileError(f"signer URI {spec} needs its public key (give --public-key)")
        try:
            return Signer.from_priv_key_uri(spec, public_key)
        except Exception as exc:
            raise KeyFileError(f"cannot load signer {spec}: {exc}") from exc
    signer = load_private_pem(spec, password)
    if public_key is not None and signer.public_key.keyid != public_key.keyid:
        raise KeyMismatchError(
            f"private key {spec} (key id {signer.public_key.keyid[:8]}) does not match "
            f"public key {public_key.keyid[:8]}"
        )
    return signer


def load_public_key(path: str | os.PathLike[str]) -> Key:
    """A public key from SubjectPublicKeyInfo PEM or securesystemslib key JSON."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from exc
    if data.lstrip().startswith(b"{"):
        try:
            obj = json.loads(data)
            keyid = obj.pop("keyid", None) or compute_default_keyid(
                obj["keytype"], obj["scheme"], obj["keyval"]
            )
            return Key.from_dict(keyid, obj)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{path} is not a securesystemslib public key: {exc}") from exc
    try:
        crypto_key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        if b"PRIVATE KEY" in data:
            raise KeyFileError(f"{path} is a private key; give the public key (.pub)") from exc
        raise KeyFileError(f"{path} is not a PEM public key") from exc
    return key_from_crypto(crypto_key)
