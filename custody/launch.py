"""Console-script entry points: defer optional heavy imports, then run the command.

securesystemslib's signer package imports ``boto3`` whenever it is
installed, for its AWS KMS signer; custody installs boto3 for the repository's
object-storage publishing, so every command (an agent's update poll, a
verification) would pay about 130 ms to import an AWS SDK it almost never
uses. Each entry point here first registers a stand-in for boto3 (see
`_Deferred`): ``import boto3`` then costs nothing and the module really loads
on its first use (an ``awskms:`` key, an ``s3://`` tree), with the same
behaviour. Nothing else changes: the entry point then imports and runs the
command's own ``console``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

DEFERRED = ("boto3",)


class _Deferred(types.ModuleType):
    """A module that imports the real one the first time one of its names is used.

    The standard library's `importlib.util.LazyLoader` does not serve here:
    on Python 3.11 the ``import`` statement itself reads the module's
    ``__spec__`` through the lazy module and so loads it at once. This stand-in
    holds a real ``__spec__``, so ``import boto3`` finds it complete, and any
    other name loads boto3 and replaces the stand-in everywhere it matters
    (``sys.modules``, and this object's own attributes for references
    already taken).
    """

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer_import(name: str) -> None:
    """Make ``import name`` free until one of the module's names is used."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return  # not installed: importing it fails as it always did
    module = _Deferred(name)
    module.__spec__ = spec
    sys.modules[name] = module


def _launch(module: str) -> None:
    for name in DEFERRED:
        defer_import(name)
    importlib.import_module(module).console()


def custody() -> None:
    _launch("custody.client.cli")


def custody_intoto() -> None:
    _launch("custody.intoto.cli")


def custody_keys() -> None:
    _launch("custody.keys_tooling.cli")


def custody_repo() -> None:
    _launch("custody.repository.cli")


def custody_tuf_client() -> None:
    _launch("custody.client.conformance")
