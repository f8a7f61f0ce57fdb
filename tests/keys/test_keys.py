"""Keys: generation, encryption, loading, key ids as securesystemslib computes them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from in_toto.models._signer import load_crypto_signer_from_pkcs8_file, load_public_key_from_file

from custody.keys_tooling.errors import KeyFileError, KeyMismatchError, PasswordError
from custody.keys_tooling.keys import (
    KEY_TYPES,
    generate_key,
    load_public_key,
    load_signer,
    write_key_pair,
)

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("key_type", sorted(KEY_TYPES))
def test_keys_are_what_in_toto_reads(tmp_path, key_type):
    signer = generate_key(key_type)
    private, public = write_key_pair(signer, tmp_path / "k", b"secret")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    theirs_pub = load_public_key_from_file(str(public))
    assert theirs_pub["keyid"] == signer.public_key.keyid == load_public_key(public).keyid
    theirs = load_crypto_signer_from_pkcs8_file(str(private), b"secret")
    assert theirs.public_key.keyid == load_signer(str(private), b"secret").public_key.keyid
    assert load_public_key(public).scheme == KEY_TYPES[key_type]


def test_password_errors_are_distinct(tmp_path):
    private, _ = write_key_pair(generate_key(), tmp_path / "k", b"secret")
    with pytest.raises(PasswordError, match="no password"):
        load_signer(str(private))
    with pytest.raises(PasswordError, match="wrong password"):
        load_signer(str(private), b"nope")
    plain, _ = write_key_pair(generate_key(), tmp_path / "p", None)
    assert load_signer(str(plain), b"secret").public_key  # a password it does not need


def test_passwords_per_key(tmp_path, monkeypatch):
    """One encrypted and one plain key in one command; each encrypted key its own password."""
    from custody.keys_tooling.keys import open_signer, password_variable

    root, _ = write_key_pair(generate_key(), tmp_path / "root", b"root-secret")
    owner, _ = write_key_pair(generate_key(), tmp_path / "owner", b"owner-secret")
    plain, _ = write_key_pair(generate_key(), tmp_path / "targets", None)
    assert password_variable(root) == "CUSTODY_KEY_PASSWORD_ROOT"
    monkeypatch.setenv("CUSTODY_KEY_PASSWORD", "owner-secret")
    monkeypatch.setenv("CUSTODY_KEY_PASSWORD_ROOT", "root-secret")
    for path in (root, owner, plain):
        assert open_signer(str(path)).public_key
    monkeypatch.delenv("CUSTODY_KEY_PASSWORD_ROOT")
    with pytest.raises(PasswordError, match="wrong password"):
        open_signer(str(root))
    monkeypatch.delenv("CUSTODY_KEY_PASSWORD")
    assert open_signer(str(plain)).public_key
    with pytest.raises(PasswordError, match="set CUSTODY_KEY_PASSWORD_OWNER"):
        open_signer(str(owner))  # no terminal here: no prompt


def test_refuses_to_overwrite_and_to_mix_halves(tmp_path):
    write_key_pair(generate_key(), tmp_path / "k", None)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_pair(generate_key(), tmp_path / "k", None)
    other = generate_key().public_key
    with pytest.raises(KeyMismatchError):
        load_signer(str(tmp_path / "k"), public_key=other)
    with pytest.raises(KeyFileError, match="private key; give the public"):
        load_public_key(tmp_path / "k")


def test_signer_uris(tmp_path):
    private, public = write_key_pair(generate_key(), tmp_path / "k", None)
    key = load_public_key(public)
    assert load_signer(f"file2:{private}").public_key.keyid == key.keyid
    assert load_signer(f"file2:{private}", public_key=key).public_key.keyid == key.keyid
    with pytest.raises(KeyFileError, match="needs its public key"):
        load_signer("awskms:alias/custody")


def test_public_key_json(tmp_path):
    key = generate_key("ecdsa").public_key
    (tmp_path / "k.json").write_text(json.dumps(key.to_dict()))
    assert load_public_key(tmp_path / "k.json").keyid == key.keyid


def test_cli_generate_and_show(tmp_path):
    env = {**os.environ, "CUSTODY_KEY_PASSWORD": "pw"}
    r = subprocess.run([BIN / "custody-keys", "generate", "alice", "--type", "ecdsa-p384"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    keyid = load_public_key(tmp_path / "alice.pub").keyid
    assert keyid in r.stdout
    for name in ("alice", "alice.pub"):
        r = subprocess.run([BIN / "custody-keys", "show", name], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0 and keyid in r.stdout and "ecdsa-sha2-nistp384" in r.stdout
    r = subprocess.run([BIN / "custody-keys", "generate", "bob"], cwd=tmp_path,
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items() if k != "CUSTODY_KEY_PASSWORD"})
    assert r.returncode == 1 and "no password for bob" in r.stderr
    assert not (tmp_path / "bob").exists()


def test_both_operator_clis_print_the_one_exit_code_table():
    """custody-repo and custody-keys end with the codes of repository.errors, and say so."""
    from custody.repository.errors import EXIT_CODES, BucketError, PendingSignaturesError
    from tests.helpers import BIN

    assert (PendingSignaturesError.exit_code, BucketError.exit_code) == (3, 4)
    for program in ("custody-repo", "custody-keys"):
        r = subprocess.run([str(BIN / program), "--help"], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0
        text = " ".join(r.stdout.split())
        for code, meaning in EXIT_CODES:
            assert f"{code} {meaning}" in text, (program, code)
