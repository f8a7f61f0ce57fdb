"""``custody-keys``: the key holders' command line.

Issue-2 scope: ``generate`` and ``show``. Rotation, revocation and the
offline signing ceremony are operations on repository roles and arrive with
the repository (see DESIGN.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from keys_tooling.errors import KeyToolingError
from keys_tooling.keys import (
    KEY_TYPES,
    generate_key,
    is_signer_uri,
    load_private_pem,
    load_public_key,
    write_key_pair,
)

PASSWORD_ENV = "CUSTODY_KEY_PASSWORD"


def _fail(message: str) -> None:
    click.echo(f"custody-keys: {message}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """Generate and inspect custody keys (securesystemslib key ids, PEM files)."""


@main.command()
@click.argument("name", type=click.Path(dir_okay=False))
@click.option("--type", "key_type", type=click.Choice(sorted(KEY_TYPES)), default="ed25519",
              show_default=True, help="Key algorithm.")
@click.option("--no-password", is_flag=True, help="Write the private key unencrypted.")
@click.option("--password-env", default=PASSWORD_ENV, show_default=True,
              help="Environment variable holding the password (else you are prompted).")
def generate(name: str, key_type: str, no_password: bool, password_env: str) -> None:
    """Write NAME (private, PKCS#8 PEM, encrypted) and NAME.pub (public PEM)."""
    password: bytes | None = None
    if not no_password:
        value = os.environ.get(password_env)
        if value is None:
            if not sys.stdin.isatty():
                _fail(f"no password for {name}: set {password_env}, or pass --no-password")
            value = click.prompt(f"Password for {name}", hide_input=True,
                                 confirmation_prompt=True)
        if not value:
            _fail("an empty password is not allowed; use --no-password for an unencrypted key")
        password = value.encode()
    try:
        signer = generate_key(key_type)
        private, public = write_key_pair(signer, name, password)
    except KeyToolingError as exc:
        _fail(str(exc))
    key = signer.public_key
    click.echo(f"{key_type} key {key.keyid}")
    click.echo(f"  private: {private} ({'encrypted' if password else 'NOT encrypted'})")
    click.echo(f"  public:  {public}")


@main.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the securesystemslib key JSON.")
@click.option("--password-env", default=PASSWORD_ENV, show_default=True,
              help="Environment variable holding a private key's password.")
def show(file: str, as_json: bool, password_env: str) -> None:
    """Print the key id, type and scheme of a public or private key FILE."""
    try:
        if is_signer_uri(file):
            _fail(f"{file} is a signer URI; show its public key file instead")
        data = Path(file).read_bytes() if Path(file).is_file() else b""
        if b"PRIVATE KEY" in data:
            secret = os.environ.get(password_env)
            key = load_private_pem(file, secret.encode() if secret else None).public_key
        else:
            key = load_public_key(file)
    except KeyToolingError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({**key.to_dict(), "keyid": key.keyid}, indent=1, sort_keys=True))
        return
    click.echo(f"keyid:   {key.keyid}")
    click.echo(f"type:    {key.keytype}")
    click.echo(f"scheme:  {key.scheme}")
