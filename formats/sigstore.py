"""The Sigstore trusted root a repository delivers, and how long its owners vouch for it.

Keyless functionaries' bundles are verified against a Sigstore trusted root
(``trusted_root.json``: Fulcio's certificates, Rekor's and the CT logs' keys).
custody's repository publishes it as the target ``ROOT_PATH``, which lies
under the ``layouts`` delegation (``in-toto/layouts/*``): only the owners'
offline keys sign it, exactly as they sign layouts, so an online-key
compromise can no more swap the trust root than it can swap a layout.
Rotating it is a TUF operation (``custody-repo sigstore-root set``), and a
client never contacts Sigstore: air-gapped installs verify keyless steps too.

The owners also say until when they vouch for the root, in the target's
``custom``::

    "custom": {"sigstore": {"expires": "2027-11-27T00:00:00Z"}}

sigstore-python accepts a root's Fulcio and Rekor keys for ever once they
were valid; this date makes a root that nobody maintains stop verifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from custody.formats.errors import FormatError

ROOT_PATH = "in-toto/layouts/sigstore.trusted_root.json"
KEY = "sigstore"


@dataclass
class SigstoreRootCustom:
    """The ``custom["sigstore"]`` of the trusted root target."""

    expires: datetime

    @classmethod
    def from_custom(cls, custom: Any) -> SigstoreRootCustom:
        data = custom.get(KEY) if isinstance(custom, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("expires"), str):
            raise FormatError(f"{ROOT_PATH} carries no custom[{KEY!r}].expires")
        try:
            expires = datetime.strptime(data["expires"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError as exc:
            raise FormatError(f"{ROOT_PATH}: custom[{KEY!r}].expires is not a date-time such "
                              "as 2027-11-27T00:00:00Z") from exc
        return cls(expires.replace(tzinfo=UTC))

    def to_custom(self) -> dict[str, Any]:
        return {KEY: {"expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}
