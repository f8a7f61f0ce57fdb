"""Signature wrappers of in-toto metadata: classic ``signed``/``signatures`` and DSSE.

Both wrappers keep the payload exactly as it was read (the raw ``signed``
object, or the DSSE payload bytes) and verify signatures over that, never
over a re-serialisation of the parsed model, so metadata written by any
implementation verifies here as long as its signatures are genuine.

Classic metadata signs the canonical JSON of ``signed``; DSSE signs the
pre-authentication encoding of the payload (payload type
``application/vnd.in-toto+json``), as in-toto 3.1.0's ``--use-dsse``.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, Signature, Signer

from custody.intoto.attestation import Statement, is_statement
from custody.intoto.canonical import encode_canonical, has_float, loads
from custody.intoto.errors import FormatError, SignatureError
from custody.intoto.files import write_atomic
from custody.intoto.models import Layout, Link, payload_from_dict

PAYLOAD_TYPE = "application/vnd.in-toto+json"
COMPACT_ABOVE = 1000


def key_from_dict(keyid: str, key: Mapping[str, Any]) -> Key:
    """A securesystemslib verifier from a layout's key dictionary."""
    data = {k: v for k, v in key.items() if k != "keyid"}
    try:
        return Key.from_dict(keyid, data)
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"key {keyid[:8]} is not a key securesystemslib can use: {exc}") from exc


def key_to_dict(key: Key) -> dict[str, Any]:
    """The layout's key dictionary for ``key`` (securesystemslib dict plus its keyid)."""
    data = key.to_dict()
    data["keyid"] = key.keyid
    return data


class Metadata:
    """Signed in-toto metadata, whichever envelope carries it."""

    def __init__(self, payload: dict[str, Any], signatures: list[Signature]) -> None:
        self._payload_dict = payload
        self.signatures = signatures
        self._parsed: Link | Layout | None = None

    # -- payload ---------------------------------------------------------
    @property
    def payload_dict(self) -> dict[str, Any]:
        """The signed payload as read (do not mutate: signatures cover it)."""
        return self._payload_dict

    @property
    def payload(self) -> Link | Layout:
        """The parsed Link or Layout (parsed once, validated, cached)."""
        if self._parsed is None:
            self._parsed = payload_from_dict(self._payload_dict)
        return self._parsed

    def evidence(self, step: str) -> Link | Layout:
        """What this metadata proves for ``step``: its link (or a sublayout).

        The payload itself for classic links; for an attestation, the link its
        statement is evidence of (see `custody.intoto.attestation`).
        """
        return self.payload

    def signed_bytes(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- signatures ------------------------------------------------------
    @property
    def signing_keyids(self) -> list[str]:
        return [s.keyid for s in self.signatures]

    def sign(self, signer: Signer) -> Signature:
        """Add ``signer``'s signature, replacing an earlier one by the same key."""
        signature = signer.sign(self.signed_bytes())
        self.signatures = [s for s in self.signatures if s.keyid != signature.keyid]
        self.signatures.append(signature)
        return signature

    def is_signed_by(self, key: Key) -> bool:
        """Whether the first signature naming ``key``'s keyid verifies with it."""
        for signature in self.signatures:
            if signature.keyid == key.keyid:
                try:
                    key.verify_signature(signature, self.signed_bytes())
                except UnverifiedSignatureError:
                    return False
                return True
        return False

    def verify_threshold(self, keys: Iterable[Key], threshold: int, what: str) -> list[str]:
        """Require valid signatures by ``threshold`` distinct ``keys``; return their ids."""
        good = sorted({k.keyid for k in keys if self.is_signed_by(k)})
        if len(good) < threshold:
            raise SignatureError(
                f"{what} has {len(good)} valid signature(s) by trusted keys, "
                f"{threshold} required"
            )
        return good

    # -- serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_bytes(self, compact: bool | None = None) -> bytes:
        """JSON with sorted keys; indented for people unless ``compact``.

        ``compact=None`` decides by size: a payload recording more than
        COMPACT_ABOVE artifacts is written on one line, because only the
        compact form is written by json's C encoder (indenting falls back to
        pure Python, which would dominate recording a large tree).
        """
        if compact is None:
            payload = self._payload_dict
            count = len(payload.get("materials") or ()) + len(payload.get("products") or ())
            compact = count > COMPACT_ABOVE
        if compact:
            text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        else:
            text = json.dumps(self.to_dict(), sort_keys=True, indent=1, separators=(",", ": "))
        return text.encode("utf-8")

    def dump(self, path: str | os.PathLike[str], compact: bool | None = None) -> None:
        """Write to ``path`` atomically (temporary name, fsync, rename)."""
        write_atomic(Path(path), self.to_bytes(compact))


class Metablock(Metadata):
    """Classic in-toto metadata: ``{"signed": ..., "signatures": [...]}``."""

    def __init__(self, payload: dict[str, Any], signatures: list[Signature] | None = None,
                 parsed: bool = False, signed_text: bytes | None = None) -> None:
        super().__init__(payload, signatures or [])
        self._canonical: bytes | None = None
        self._floats_checked = parsed
        # The exact bytes ``payload`` was parsed from, when the file held them
        # compactly: usually already canonical (see is_signed_by).
        self._signed_text = signed_text

    @classmethod
    def new(cls, payload: Link | Layout) -> Metablock:
        block = cls(payload.to_dict())
        block._parsed = payload
        # The models validated every field but the opaque ones: look for
        # floats only there, not in tens of thousands of artifact hashes.
        opaque = ([payload.byproducts, payload.environment] if isinstance(payload, Link)
                  else [payload.keys])
        block._floats_checked = not any(map(has_float, opaque))
        return block

    def signed_bytes(self) -> bytes:
        if self._canonical is None:
            self._canonical = encode_canonical(self._payload_dict, self._floats_checked)
        return self._canonical

    def is_signed_by(self, key: Key) -> bool:
        """As `Metadata.is_signed_by`, trying the file's own bytes of ``signed`` first.

        Links custody writes compactly hold ``signed`` in canonical form
        already, so a signature over those exact bytes verifies without
        re-encoding tens of thousands of artifacts. It is as strong as the
        canonical check: the payload was parsed from precisely the bytes the
        signature covers. Any other file (indented, as in-toto writes them, or
        not canonical) takes the canonical path, with the same result.
        """
        if self._signed_text is not None:
            signature = next((s for s in self.signatures if s.keyid == key.keyid), None)
            if signature is not None:
                try:
                    key.verify_signature(signature, self._signed_text)
                except UnverifiedSignatureError:
                    pass
                else:
                    if len(self.signatures) == 1:  # a link: nothing else will check it
                        self._signed_text = None  # free a copy of the whole payload
                    return True
        return super().is_signed_by(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "signatures": [s.to_dict() for s in self.signatures],
            "signed": self._payload_dict,
        }


class Envelope(Metadata):
    """A DSSE envelope whose payload is in-toto JSON."""

    def __init__(self, payload_bytes: bytes, signatures: list[Signature] | None = None,
                 payload_type: str = PAYLOAD_TYPE) -> None:
        try:
            data = loads(payload_bytes)
        except ValueError as exc:
            raise FormatError("DSSE payload is not JSON") from exc
        if not isinstance(data, dict):
            raise FormatError("DSSE payload must be a JSON object")
        super().__init__(data, signatures or [])
        self.payload_bytes = payload_bytes
        self.payload_type = payload_type

    @property
    def payload(self) -> Link | Layout:
        """The parsed Link or Layout; an attestation's evidence under its own step name."""
        if self._parsed is None and is_statement(self._payload_dict):
            self._parsed = self.evidence("")
        return super().payload

    @functools.cached_property
    def statement(self) -> Statement | None:
        """The in-toto Statement this envelope carries, if it carries one (parsed once)."""
        if not is_statement(self._payload_dict):
            return None
        return Statement.from_dict(self._payload_dict, "DSSE payload")

    def evidence(self, step: str) -> Link | Layout:
        statement = self.statement
        if statement is None:
            return self.payload
        return statement.evidence(step, "DSSE payload")

    @classmethod
    def attest(cls, statement: Statement) -> Envelope:
        """A DSSE envelope (unsigned yet) carrying ``statement``."""
        return cls(json.dumps(statement.to_dict(), sort_keys=True).encode("utf-8"))

    @classmethod
    def new(cls, payload: Link | Layout) -> Envelope:
        # The reference serialises the payload with sorted keys and default
        # separators; doing the same keeps envelopes alike, though DSSE does
        # not require it.
        envelope = cls(json.dumps(payload.to_dict(), sort_keys=True).encode("utf-8"))
        envelope._parsed = payload
        return envelope

    def signed_bytes(self) -> bytes:
        ptype = self.payload_type.encode("utf-8")
        return b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(self.payload_bytes),
                                         self.payload_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload_bytes).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(bytes.fromhex(s.signature)).decode()}
                for s in self.signatures
            ],
        }


def _signatures(raw: Any, dsse: bool, where: str) -> list[Signature]:
    if not isinstance(raw, list):
        raise FormatError(f"{where}.signatures must be a list")
    out = []
    for i, sig in enumerate(raw):
        if not isinstance(sig, dict) or not isinstance(sig.get("keyid"), str):
            raise FormatError(f"{where}.signatures[{i}] must name a keyid")
        value = sig.get("sig")
        if not isinstance(value, str):
            raise FormatError(f"{where}.signatures[{i}].sig is missing")
        if dsse:
            try:
                value = base64.b64decode(value, validate=True).hex()
            except ValueError as exc:  # binascii.Error, or non-ASCII text
                raise FormatError(f"{where}.signatures[{i}].sig is not base64") from exc
        extra = {k: v for k, v in sig.items() if k not in ("keyid", "sig")}
        out.append(Signature(sig["keyid"], value, extra))
    return out


def metadata_from_dict(data: Any, where: str = "metadata", parsed: bool = False) -> Metadata:
    """Read either envelope from its JSON object.

    ``parsed`` says ``data`` came from `canonical.loads` and so holds no floats.
    """
    if not isinstance(data, dict):
        raise FormatError(f"{where} must be a JSON object")
    if "payload" in data and "payloadType" in data:
        if data["payloadType"] != PAYLOAD_TYPE:
            raise FormatError(f"{where}.payloadType must be {PAYLOAD_TYPE!r}")
        try:
            payload = base64.b64decode(data["payload"], validate=True)
        except (ValueError, TypeError) as exc:  # binascii.Error, or non-ASCII text
            raise FormatError(f"{where}.payload is not base64") from exc
        return Envelope(payload, _signatures(data.get("signatures"), True, where))
    if "signed" in data and "signatures" in data:
        if not isinstance(data["signed"], dict):
            raise FormatError(f"{where}.signed must be a JSON object")
        return Metablock(data["signed"], _signatures(data["signatures"], False, where),
                         parsed=parsed)
    raise FormatError(f"{where} is neither classic in-toto metadata (signed, signatures) "
                      "nor a DSSE envelope (payload, payloadType, signatures)")


_DECODER = json.JSONDecoder()
_COMPACT_HEAD = '{"signatures":'
_COMPACT_SIGNED = ',"signed":'


def _compact_metablock(data: bytes, where: str) -> Metablock | None:
    """A Metablock from ``{"signatures":[...],"signed":{...}}`` written without spaces.

    Keeps the exact bytes of ``signed`` for `Metablock.is_signed_by`; returns
    None for any other layout of the file (the general parser then reads it).
    Only the short head is decoded to find where ``signed`` starts; the body
    is sliced once, as bytes.
    """
    if not data.startswith(_COMPACT_HEAD.encode()):
        return None
    try:
        # Signatures are short and ASCII: a decoded head holds them whole (a
        # multi-byte character cut at its end is dropped, after them).
        head = data[:65536].decode("utf-8", "ignore")
        signatures, end = _DECODER.raw_decode(head, len(_COMPACT_HEAD))
        if not head.startswith(_COMPACT_SIGNED, end):
            return None
        start = len(head[:end + len(_COMPACT_SIGNED)].encode("utf-8"))
        body = data.rstrip()
        if not body.endswith(b"}"):
            return None
        signed = body[start:-1]
        payload = loads(signed)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    return Metablock(payload, _signatures(signatures, False, where), parsed=True,
                     signed_text=signed)


class _DsseShape(msgspec.Struct):
    """A DSSE envelope's fields, ``payload`` base64-decoded by msgspec while parsing."""

    payload: bytes
    payloadType: str
    signatures: list[Any]


_DSSE_DECODER = msgspec.json.Decoder(_DsseShape)


def _dsse_envelope(data: bytes, where: str) -> Envelope | None:
    """An Envelope read in one pass, the payload decoded from base64 as it is parsed.

    About three times faster than parsing the JSON and then decoding a
    payload string of tens of megabytes. Any file this does not read (not
    an envelope, invalid base64, another payload type) returns None and
    takes the general path, which names the problem.
    """
    if data[:64].lstrip()[:1] != b"{" or b'"payloadType"' not in data[:4096] + data[-4096:]:
        return None
    try:
        shape = _DSSE_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if shape.payloadType != PAYLOAD_TYPE:
        return None
    return Envelope(shape.payload, _signatures(shape.signatures, True, where))


def metadata_from_bytes(data: bytes, where: str = "metadata") -> Metadata:
    compact = _compact_metablock(data, where) or _dsse_envelope(data, where)
    if compact is not None:
        return compact
    try:
        parsed = loads(data)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FormatError(f"{where} is not valid JSON: {exc}") from exc
    return metadata_from_dict(parsed, where, parsed=True)


def load_metadata(path: str | os.PathLike[str]) -> Metadata:
    """Read a link or layout file in either envelope."""
    return metadata_from_bytes(Path(path).read_bytes(), where=os.fspath(path))
