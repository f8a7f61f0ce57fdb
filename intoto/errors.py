"""Every way in-toto verification or recording can fail, in one place.

Callers (the client, the repository, the command line) catch `IntotoError`
to know that the supply chain was refused, and the concrete class to know
why. Each message is one sentence naming what failed: the step or
inspection, the rule, the artifact and the key, so that an operator reading
a refusal in a log knows where to look without a debugger.
"""

from __future__ import annotations


class IntotoError(Exception):
    """Base class: the supply chain could not be recorded or was refused."""


class FormatError(IntotoError, ValueError):
    """Metadata does not have the shape the in-toto specification requires.

    The message names the offending field, e.g. ``steps[2].threshold``.
    """


class VerificationError(IntotoError):
    """Base class of refusals during verification (exit code 1 on the CLI)."""


class SignatureError(VerificationError):
    """A layout or link is not signed as required."""


class LayoutSignatureError(SignatureError):
    """The layout lacks a threshold of valid signatures by the trusted keys."""


class LayoutExpiredError(VerificationError):
    """The layout's ``expires`` date has passed."""


class KeylessUnavailableError(VerificationError):
    """The layout names keyless functionaries and the sigstore library is not installed.

    Not a `SignatureError`: no bundle was judged, so the verifier stops at
    once with the one thing to do (install the ``keyless`` extra) instead of
    listing each bundle as unverifiable.
    """


class LinkNotFoundError(VerificationError):
    """Fewer link files than a step's threshold exist for it."""


class ThresholdError(VerificationError):
    """A step lacks ``threshold`` authorized, validly signed, agreeing links."""


class RuleError(VerificationError):
    """An artifact rule refused the artifacts of a step or inspection.

    Attributes:
        item: name of the step or inspection whose rules failed.
        source: ``"materials"`` or ``"products"``.
        rule: the rule, as the list of words it is written with.
        artifacts: the artifact paths that caused the refusal.
    """

    def __init__(
        self, message: str, item: str, source: str, rule: list[str], artifacts: list[str]
    ) -> None:
        super().__init__(message)
        self.item = item
        self.source = source
        self.rule = rule
        self.artifacts = artifacts


class InspectionError(VerificationError):
    """An inspection command failed, timed out or was not allowed to run."""


class ProductBindingError(VerificationError):
    """A delivered file is not a product of the layout's final step."""


class RecordError(IntotoError):
    """Recording a step failed (bad paths, command not found, timeout)."""
