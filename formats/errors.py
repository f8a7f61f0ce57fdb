"""The one exception of the formats package."""

from __future__ import annotations


class FormatError(ValueError):
    """Metadata that does not fit its format; the message names the file and the field."""
