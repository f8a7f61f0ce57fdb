"""custody's own metadata formats, parsed into typed classes at the boundary.

The repository writes them and the client reads them, so they live below
both (neither imports the other): the package index and the custom fields of
a target. Everything in them is signed by online keys only, which a
compromised server holds, so the client treats them as hostile input: size
and depth are bounded before parsing, and every field is checked for type,
length and syntax on the way in, the way python-tuf parses its own metadata.
"""

from custody.formats.errors import FormatError

__all__ = ["FormatError"]
