"""Errors of key handling, in one place; each message names the key file or URI."""

from __future__ import annotations


class KeyToolingError(Exception):
    """Base class: a key could not be generated, read, decrypted or used."""


class KeyFileError(KeyToolingError):
    """A key file is missing, unreadable, or not a key of a supported type."""


class PasswordError(KeyToolingError):
    """An encrypted private key needs a password, or the one given is wrong."""


class KeyMismatchError(KeyToolingError):
    """A private key does not belong to the public key it was paired with."""
